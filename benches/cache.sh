#!/usr/bin/env bash
# Layer-cache benchmark: the benches/layer.sh corpus (one directory tree in
# one gzip layer) built cold (empty cache) and rebuilt with nothing changed
# (every layer from the cache), and without the cache (--no-cache). Prints
# the median wall time and peak RSS of each, and the ratios against the targets: a nothing-changed rebuild in at
# most 0.1 of a cold build's time, with a peak RSS of at most 64 MB.
#
# Usage: benches/cache.sh [CORPUS_DIR]   (default: $CORPUS, else a generated
# corpus of $CACHE_MB MB in $CACHE_FILES files, 700 and 45000 by default)
# Needs: GNU time, bc, python3 (Debian packages time, bc, python3).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

corpus=${1:-${CORPUS:-}}
if [ -z "$corpus" ]; then
  corpus=$work/corpus
  echo "generating a ${CACHE_MB:-700} MB corpus of ${CACHE_FILES:-45000} files in $corpus" >&2
  python3 benches/gen_corpus.py "$corpus" "${CACHE_MB:-700}" "${CACHE_FILES:-45000}"
fi
bytes=$(du -sb "$corpus" | cut -f1)
files=$(find "$corpus" -type f | wc -l)
mb=$(echo "$bytes / 1000000" | bc -l)
printf 'corpus: %s (%.0f MB, %d files)\n' "$corpus" "$mb" "$files"

cargo build --release --quiet
bin=$PWD/target/release/boxwright
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
# Files changed within two seconds of a build are hashed again on the next
# one (see the README's layer cache section); a corpus is older than that.
sleep 2

# one timed run: prints "seconds peak_kb"
timed() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
  cat "$work/time"
}
median() { sort -n | sed -n "$(( (runs + 1) / 2 ))p"; }

cold=() warm=() none=()
for i in $(seq "$runs"); do
  rm -rf "$work/out"
  none+=("$(timed "$bin" build --quiet --no-cache "${ctx[@]}" -o "$work/out" "$work/recipe.toml")")
  rm -rf "$work/cache" "$work/out"
  cold+=("$(timed "$bin" build --quiet --cache-dir "$work/cache" "${ctx[@]}" -o "$work/out" "$work/recipe.toml")")
  # A layer the cache stored within two seconds is hashed at its hit, not
  # ahead of it (see the README); a release comes later than that.
  sleep 2
  warm+=("$(timed "$bin" build --quiet --cache-dir "$work/cache" "${ctx[@]}" -o "$work/out" "$work/recipe.toml")")
done
read -r t_cold rss_cold < <(printf '%s\n' "${cold[@]}" | median)
read -r t_warm rss_warm < <(printf '%s\n' "${warm[@]}" | median)
read -r t_none rss_none < <(printf '%s\n' "${none[@]}" | median)
# The rebuild must really have come from the cache.
"$bin" build --json --quiet --cache-dir "$work/cache" "${ctx[@]}" -o "$work/out" "$work/recipe.toml" > "$work/json"
python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["images"][0]["layers"]; assert all(x["cached"] for x in l), l' "$work/json"

row() { printf '%-34s %8.2f s %8.1f MB RSS\n' "$1" "$2" "$(echo "$3 / 1024" | bc -l)"; }
echo "median of $runs runs, $(nproc) cores"
row "build with --no-cache" "$t_none" "$rss_none"
row "cold build (empty cache)" "$t_cold" "$rss_cold"
row "rebuild, nothing changed" "$t_warm" "$rss_warm"
printf 'ratio rebuild / cold: %.3f (target <= 0.10)\n' "$(echo "$t_warm / $t_cold" | bc -l)"
printf 'ratio cold / --no-cache: %.2f (the cost of keying and storing)\n' "$(echo "$t_cold / $t_none" | bc -l)"
blob=$(ls -S "$work/cache/sha256" | head -1)
printf 'cached layer: %.1f MB; sha256sum of it: %s s (every hit hashes it, ahead of the hit or at it)\n' \
  "$(echo "$(stat -c %s "$work/cache/sha256/$blob") / 1000000" | bc -l)" \
  "$( { /usr/bin/time -f %e sha256sum "$work/cache/sha256/$blob" > /dev/null; } 2>&1 )"
printf 'peak RSS rebuild: %.1f MB (target <= 64 MB)\n' "$(echo "$rss_warm / 1024" | bc -l)"
