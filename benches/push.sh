#!/usr/bin/env bash
# Push benchmark: one generated image (4 layers, ~250 MB of seeded random
# bytes, so gzip cannot shrink it) pushed to two local registries.
#   boxwright push --to A --to B          (both registries at once)
#   skopeo copy oci:... docker://C, then skopeo copy oci:... docker://D
# Each run gets fresh, empty registries for each tool, so neither benefits
# from blobs the other left behind. Prints the median wall time of RUNS runs
# (default 3), bytes sent (boxwright's report) and bytes stored per
# registry, and the ratio to skopeo against its target: pushing to both
# registries at once in at most 0.6 of the time of two skopeo copies.
#
# Then, on the same image, in the same run:
#   `build --push --to A --to B` (no layout kept) against `build -o` alone:
#   what pushing while building adds to the build;
#   a push to a new repository of a registry that holds the blobs in another
#   repository, in a separate process with the same --cache-dir: blob bytes
#   sent (0: every blob mounted from the remembered repository) and time,
#   side by side with the same push remembering nothing.
#
# Every boxwright command gets a --cache-dir of its own run, so that nothing
# remembered from earlier runs (or other work) changes what is measured.
#
# Usage: benches/push.sh        Env: RUNS=3 SIZES_MB="120 80 40 10" BOXWRIGHT_BIN=
#   CORPUS=DIR: also build --push vs build alone for one layer of that tree
# Needs: docker-registry, skopeo, curl, python3 (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
sizes=${SIZES_MB:-"120 80 40 10"}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# BOXWRIGHT_BIN: a binary already built (else the release build).
if [ -z "${BOXWRIGHT_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${BOXWRIGHT_BIN:-$PWD/target/release/boxwright}

# The image: one layer per size, seeded random bytes.
mkdir -p "$work/ctx"
python3 - "$work/ctx" $sizes <<'PY'
import random, sys
d, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
for i, mb in enumerate(sizes):
    r = random.Random(1000 + i)
    with open(f"{d}/l{i}.bin", "wb") as f:
        for _ in range(mb):
            f.write(r.randbytes(1 << 20))
PY
{
  printf '[image]\nname = "bench"\n\n'
  i=0
  for _ in $sizes; do
    printf '[[layer]]\nname = "l%d"\n\n[[layer.entry]]\nsrc = "l%d.bin"\ndest = "/data/l%d.bin"\n\n' $i $i $i
    i=$((i + 1))
  done
} > "$work/ctx/recipe.toml"
digest=$("$bin" build --quiet --no-cache -o "$work/layout" "$work/ctx/recipe.toml")
blob_bytes=$(du -sb --apparent-size "$work/layout/blobs" | cut -f1)
printf 'image: %s, %d layers, %.1f MB of blobs\n' "$digest" "$(echo $sizes | wc -w)" \
  "$(echo "$blob_bytes / 1000000" | bc -l)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME: starts an empty docker-registry, sets $host.
start_registry() {
  local dir=$work/reg-$1 port
  mkdir -p "$dir/data"
  port=$(free_port)
  cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: bench
YAML
  docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/v2/" && { host=127.0.0.1:$port; return; }
    sleep 0.05
  done
  echo "docker-registry did not start:" >&2; cat "$dir/log" >&2; exit 1
}
stop_registries() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
stored() { du -sb --apparent-size "$work/reg-$1/data" | cut -f1; }
now() { date +%s.%N; }
median() { sort -n | sed -n "$(( (runs + 1) / 2 ))p"; }

# Warm the page cache.
cat "$work/layout/blobs/sha256/"* > /dev/null

bw_times=() sk_times=() bw_sent=() bw_stored=() sk_stored=()
for run in $(seq "$runs"); do
  rm -rf "$work"/reg-*
  start_registry "a$run"; a=$host
  start_registry "b$run"; b=$host
  t0=$(now)
  "$bin" --quiet push "$work/layout" --to "$a/bench/img:1" --to "$b/bench/img:1" --json \
    --cache-dir "$work/cache-push-$run" > "$work/report.json"
  t1=$(now)
  bw_times+=("$(echo "$t1 - $t0" | bc -l)")
  bw_sent+=("$(python3 -c 'import json,sys; print(sum(r["bytes_sent"] for r in json.load(open(sys.argv[1]))["registries"]))' "$work/report.json")")
  bw_stored+=("$(( $(stored "a$run") + $(stored "b$run") ))")
  for h in "$a" "$b"; do
    got=$(skopeo inspect --raw --tls-verify=false "docker://$h/bench/img:1" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$digest" ] || { echo "boxwright pushed $got to $h, expected $digest" >&2; exit 1; }
  done
  stop_registries

  start_registry "c$run"; c=$host
  start_registry "d$run"; d=$host
  t0=$(now)
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$work/layout" "docker://$c/bench/img:1"
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$work/layout" "docker://$d/bench/img:1"
  t1=$(now)
  sk_times+=("$(echo "$t1 - $t0" | bc -l)")
  sk_stored+=("$(( $(stored "c$run") + $(stored "d$run") ))")
  stop_registries
  printf 'run %d: boxwright %.2f s, skopeo x2 %.2f s\n' "$run" "${bw_times[-1]}" "${sk_times[-1]}"
done

bw=$(printf '%s\n' "${bw_times[@]}" | median)
sk=$(printf '%s\n' "${sk_times[@]}" | median)
mb() { echo "$1 / 1000000" | bc -l; }
printf '\nmedian of %d runs, two registries, %.1f MB of blobs each:\n' "$runs" "$(mb "$blob_bytes")"
printf '  boxwright push --to A --to B      %6.2f s   sent %.1f MB (report), stored %.1f MB\n' \
  "$bw" "$(mb "${bw_sent[0]}")" "$(mb "${bw_stored[0]}")"
printf '  skopeo copy to A, then to B        %6.2f s   stored %.1f MB\n' "$sk" "$(mb "${sk_stored[0]}")"
printf '  ratio boxwright / skopeo           %6.2f    (target <= 0.60)\n' "$(echo "$bw / $sk" | bc -l)"

# build --push (no layout) to two registries, against build alone.
sent_blobs() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r=r.get("push", r); print(sum(t["bytes_sent"] for t in r["targets"]))' "$1"; }
build_times=() bp_times=() mem_times=() fresh_times=() mem_sent=() fresh_sent=() mem_mounted=()
for run in $(seq "$runs"); do
  rm -rf "$work/build-$run"
  t0=$(now)
  "$bin" --quiet build -o "$work/build-$run" "$work/ctx/recipe.toml" \
    --cache-dir "$work/cache-alone-$run" > /dev/null
  t1=$(now)
  build_times+=("$(echo "$t1 - $t0" | bc -l)")
  rm -rf "$work/build-$run"

  rm -rf "$work"/reg-*
  start_registry "e$run"; a=$host
  start_registry "f$run"; b=$host
  t0=$(now)
  (cd "$work" && "$bin" --quiet build "$work/ctx/recipe.toml" --push --to "$a/bench/img:1" --to "$b/bench/img:1" \
    --cache-dir "$work/cache-build-$run" > /dev/null)
  t1=$(now)
  bp_times+=("$(echo "$t1 - $t0" | bc -l)")
  [ ! -e "$work/out" ] || { echo "build --push without -o wrote $work/out" >&2; exit 1; }

  # The registry A holds the image in bench/img; push it to new repositories.
  mem=$work/cache-mem-$run
  "$bin" --quiet push "$work/layout" --to "$a/bench/seed:1" --cache-dir "$mem" > /dev/null
  t0=$(now)
  "$bin" --quiet push "$work/layout" --to "$a/bench/new:1" --cache-dir "$mem" --json > "$work/mem.json"
  t1=$(now)
  mem_times+=("$(echo "$t1 - $t0" | bc -l)")
  mem_sent+=("$(sent_blobs "$work/mem.json")")
  mem_mounted+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["blobs_mounted"])' "$work/mem.json")")
  t0=$(now)
  "$bin" --quiet push "$work/layout" --to "$a/bench/fresh:1" --cache-dir "$work/cache-none-$run" --json > "$work/fresh.json"
  t1=$(now)
  fresh_times+=("$(echo "$t1 - $t0" | bc -l)")
  fresh_sent+=("$(sent_blobs "$work/fresh.json")")
  stop_registries
  printf 'run %d: build %.2f s, build --push %.2f s; new repository: remembered %.2f s, not %.2f s\n' \
    "$run" "${build_times[-1]}" "${bp_times[-1]}" "${mem_times[-1]}" "${fresh_times[-1]}"
done
bt=$(printf '%s\n' "${build_times[@]}" | median)
bp=$(printf '%s\n' "${bp_times[@]}" | median)
mt=$(printf '%s\n' "${mem_times[@]}" | median)
ft=$(printf '%s\n' "${fresh_times[@]}" | median)
printf '\nmedian of %d runs, same image:\n' "$runs"
printf '  boxwright build -o DIR                         %6.2f s\n' "$bt"
printf '  boxwright build --push --to A --to B (no -o)   %6.2f s   ratio %.2f\n' "$bp" "$(echo "$bp / $bt" | bc -l)"
printf '  push to a new repository, blobs remembered     %6.2f s   sent %.1f MB of blobs, %d blobs mounted (separate run)\n' \
  "$mt" "$(mb "${mem_sent[0]}")" "${mem_mounted[0]}"
printf '  push to a new repository, nothing remembered   %6.2f s   sent %.1f MB of blobs\n' "$ft" "$(mb "${fresh_sent[0]}")"
[ "${mem_sent[0]}" -eq 0 ] || { echo "a push with the blobs remembered sent ${mem_sent[0]} bytes" >&2; exit 1; }

# With CORPUS=DIR (a directory tree, e.g. the corpus of benches/layer.sh):
# the same build alone against build --push to two registries, for one
# layer of that tree (compressible data, where compression dominates).
if [ -n "${CORPUS:-}" ]; then
  corpus=$(cd "$CORPUS" && pwd)
  printf '[image]\nname = "corpus"\n[[layer]]\nname = "corpus"\n[[layer.entry]]\nsrc = "%s"\ndest = "/opt/corpus"\n' \
    "$(basename "$corpus")" > "$work/corpus.toml"
  tar cf - -C "$corpus" . | cat > /dev/null  # warm the page cache (tar reads nothing when it writes to /dev/null itself)
  # CPU seconds of a finished process (user + system), and of a running one.
  cpu_time() { awk '{ print $1 + $2 }' "$1"; }
  cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
  cb_times=() cp_times=() cb_cpu=() cp_cpu=() reg_cpu=()
  for run in $(seq "$runs"); do
    t0=$(now)
    /usr/bin/time -f "%U %S" -o "$work/cpu" \
      "$bin" --quiet build --context "$(dirname "$corpus")" -o "$work/corpus-$run" "$work/corpus.toml" \
      --cache-dir "$work/cache-corpus-alone-$run" > /dev/null
    t1=$(now)
    cb_cpu+=("$(cpu_time "$work/cpu")")
    cb_times+=("$(echo "$t1 - $t0" | bc -l)")
    rm -rf "$work/corpus-$run" "$work"/reg-*
    start_registry "c$run"; a=$host
    start_registry "d$run"; b=$host
    r0=$(echo "$(cpu_of "${pids[0]}") + $(cpu_of "${pids[1]}")" | bc -l)
    t0=$(now)
    (cd "$work" && /usr/bin/time -f "%U %S" -o "$work/cpu" \
      "$bin" --quiet build --context "$(dirname "$corpus")" "$work/corpus.toml" --push \
      --to "$a/bench/corpus:1" --to "$b/bench/corpus:1" --cache-dir "$work/cache-corpus-push-$run" > /dev/null)
    t1=$(now)
    cp_times+=("$(echo "$t1 - $t0" | bc -l)")
    cp_cpu+=("$(cpu_time "$work/cpu")")
    reg_cpu+=("$(echo "$(cpu_of "${pids[0]}") + $(cpu_of "${pids[1]}") - $r0" | bc -l)")
    stop_registries
    printf 'corpus run %d: build %.2f s, build --push %.2f s\n' "$run" "${cb_times[-1]}" "${cp_times[-1]}"
  done
  cb=$(printf '%s\n' "${cb_times[@]}" | median)
  cp=$(printf '%s\n' "${cp_times[@]}" | median)
  printf '\nmedian of %d runs, one layer of %s:\n' "$runs" "$corpus"
  printf '  boxwright build -o DIR                         %6.2f s\n' "$cb"
  printf '  boxwright build --push --to A --to B (no -o)   %6.2f s   ratio %.2f (target <= 1.10)\n' "$cp" "$(echo "$cp / $cb" | bc -l)"
  # On a machine whose cores the build already fills, the registries' own
  # work (receiving, hashing and storing each layer) adds wall time that no
  # client can hide; what the CPU seconds allow is the floor below.
  ccb=$(printf '%s\n' "${cb_cpu[@]}" | median)
  ccp=$(printf '%s\n' "${cp_cpu[@]}" | median)
  creg=$(printf '%s\n' "${reg_cpu[@]}" | median)
  cores=$(nproc)
  printf '  CPU seconds: build %.2f; build --push %.2f, the two registries %.2f more\n' "$ccb" "$ccp" "$creg"
  printf '  floor of build --push on %d cores: (%.2f + %.2f) / %d = %.2f s, ratio %.2f\n' \
    "$cores" "$ccp" "$creg" "$cores" "$(echo "($ccp + $creg) / $cores" | bc -l)" \
    "$(echo "($ccp + $creg) / $cores / $cb" | bc -l)"
fi
