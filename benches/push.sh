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
# Usage: benches/push.sh        Env: RUNS=3 SIZES_MB="120 80 40 10"
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

cargo build --release --quiet
bin=$PWD/target/release/boxwright

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
  "$bin" --quiet push "$work/layout" --to "$a/bench/img:1" --to "$b/bench/img:1" --json > "$work/report.json"
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
