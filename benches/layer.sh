#!/usr/bin/env bash
# Layer-assembly benchmark: one directory tree (~700 MB, ~45,000 files, a
# CPython installation) built into one gzip layer from a warm page cache.
# Prints wall time, MB/s and peak RSS of:
#   boxwright build (default level 1, and level 6)   vs   tar | gzip   vs   umoci insert
# and the ratios against the targets: boxwright at its default level in at
# most half of umoci's time, at the level matching umoci's output size in at
# most 0.9 of it, and a peak RSS of at most 64 MB.
#
# Usage: benches/layer.sh [CORPUS_DIR]   (default: $CORPUS, else the Python
# installation of `python3` if it is large enough, else a generated corpus)
# Needs: umoci, gzip, GNU time (Debian packages umoci, gzip, time).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

corpus=${1:-${CORPUS:-}}
if [ -z "$corpus" ]; then
  prefix=$(python3 -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)
  if [ -n "$prefix" ] && [ "$(du -sm "$prefix" | cut -f1)" -ge 500 ]; then
    corpus=$prefix
  else
    corpus=$work/corpus
    echo "generating a ~700 MB corpus in $corpus" >&2
    python3 benches/gen_corpus.py "$corpus" 700 45000
  fi
fi
bytes=$(du -sb "$corpus" | cut -f1)
files=$(find "$corpus" -type f | wc -l)
mb=$(echo "$bytes / 1000000" | bc -l)
printf 'corpus: %s (%.0f MB, %d files)\n' "$corpus" "$mb" "$files"

cargo build --release --quiet
bin=$PWD/target/release/boxwright
# The corpus's parent directory is the build context, so the tree is copied as
# it is (its symlinks stay symlinks).
cat > "$work/recipe.toml" <<TOML
[image]
name = "bench"
[[layer]]
name = "corpus"
[[layer.entry]]
src = "$(basename "$corpus")"
dest = "/opt/python"
TOML
ctx=(--context "$(dirname "$corpus")")
tar cf - -C "$corpus" . | cat > /dev/null  # warm the page cache (tar reads nothing when it writes to /dev/null itself)

# median of N runs: prints "seconds peak_kb"
measure() {
  local out=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
    out+=("$(cat "$work/time")")
  done
  printf '%s\n' "${out[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
size_of() { du -b "$1" | cut -f1; }

read -r t_bw1 rss_bw1 < <(measure "$bin" build --quiet --no-cache "${ctx[@]}" -o "$work/out1" "$work/recipe.toml")
layer1=$(ls -S "$work/out1/blobs/sha256" | head -1); s_bw1=$(size_of "$work/out1/blobs/sha256/$layer1")
read -r t_bwz rss_bwz < <(measure "$bin" build --quiet --no-cache "${ctx[@]}" --compression zstd -o "$work/outz" "$work/recipe.toml")
layerz=$(ls -S "$work/outz/blobs/sha256" | head -1); s_bwz=$(size_of "$work/outz/blobs/sha256/$layerz")
read -r t_tar rss_tar < <(measure sh -c "tar cf - -C '$corpus' . | gzip > '$work/tar.gz'")
s_tar=$(size_of "$work/tar.gz")

umoci_run() {
  rm -rf "$work/umoci"
  umoci init --layout "$work/umoci" && umoci new --image "$work/umoci:bench" && umoci insert --image "$work/umoci:bench" "$corpus" /opt/python
}
export -f umoci_run; export work corpus
read -r t_umoci rss_umoci < <(measure bash -c umoci_run)
ulayer=$(ls -S "$work/umoci/blobs/sha256" | head -1); s_umoci=$(size_of "$work/umoci/blobs/sha256/$ulayer")

# The lowest gzip level whose output is no larger than umoci's.
for lvl in 6 7 8 9; do
  "$bin" build --quiet --no-cache "${ctx[@]}" --level "$lvl" -o "$work/out6" "$work/recipe.toml" > /dev/null
  layer6=$(ls -S "$work/out6/blobs/sha256" | head -1); s_bw6=$(size_of "$work/out6/blobs/sha256/$layer6")
  [ "$s_bw6" -le "$s_umoci" ] && break
done
read -r t_bw6 rss_bw6 < <(measure "$bin" build --quiet --no-cache "${ctx[@]}" --level "$lvl" -o "$work/out6" "$work/recipe.toml")

row() { printf '%-34s %8.2f s %8.0f MB/s %8.1f MB RSS %10.1f MB out\n' "$1" "$2" "$(echo "$mb / $2" | bc -l)" "$(echo "$3 / 1024" | bc -l)" "$(echo "$4 / 1000000" | bc -l)"; }
echo "median of $runs runs, $(nproc) cores"
row "boxwright gzip -1 (default)" "$t_bw1" "$rss_bw1" "$s_bw1"
row "boxwright gzip -$lvl" "$t_bw6" "$rss_bw6" "$s_bw6"
row "boxwright zstd -3" "$t_bwz" "$rss_bwz" "$s_bwz"
row "tar | gzip -6" "$t_tar" "$rss_tar" "$s_tar"
row "umoci insert (defaults)" "$t_umoci" "$rss_umoci" "$s_umoci"
ratio() { echo "$1 / $2" | bc -l; }
printf 'ratio boxwright(default) / umoci insert: %.2f (target <= 0.50)\n' "$(ratio "$t_bw1" "$t_umoci")"
printf 'ratio boxwright(-%d) / umoci insert:      %.2f (target <= 0.90; output %s umoci: %d vs %d bytes)\n' "$lvl" "$(ratio "$t_bw6" "$t_umoci")" "$([ "$s_bw6" -le "$s_umoci" ] && echo '<=' || echo '>')" "$s_bw6" "$s_umoci"
printf 'ratio boxwright(default) / tar|gzip:      %.2f\n' "$(ratio "$t_bw1" "$t_tar")"
printf 'peak RSS boxwright: %.1f MB (target <= 64 MB)\n' "$(echo "$rss_bw1 / 1024" | bc -l)"
