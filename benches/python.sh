#!/usr/bin/env bash
# Python-dependency layer benchmark: the packages of a typical web/AI app
# (fastapi, pydantic, httpx, numpy, pandas, boto3, aiohttp, openai, ...:
# about 60 wheels, about 65 MB) installed from a local wheelhouse into one
# gzip layer of an image, by
#   boxwright build (a `python` entry: the hashed lock, find_links = the wheelhouse)
#   uv pip install --no-deps --offline --target DIR, then umoci insert DIR
# each cold (empty caches) and again with nothing changed (warm caches),
# median wall time of RUNS runs and peak RSS (GNU time), same run.
# Targets: boxwright cold <= 0.4x and rebuild <= 0.1x of uv + umoci cold,
# peak RSS <= 128 MB.
#
# The wheelhouse (pip download, once) and uv (from PyPI, once) are kept
# under target/bench-python; PYTHON_BENCH_DIR moves them.
# Usage: benches/python.sh    (RUNS=3 by default)
# Needs: python3.11 with pip, umoci, GNU time, bc (Debian packages
# python3.11, python3-pip, umoci, time, bc); network to PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
dir=${PYTHON_BENCH_DIR:-$PWD/target/bench-python}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

packages=(fastapi pydantic httpx numpy pandas boto3 uvicorn starlette requests jinja2
  click pyyaml sqlalchemy python-dotenv tenacity rich typer orjson aiohttp openai
  cryptography pyjwt)
wh=$dir/wheelhouse
if [ ! -f "$wh/.complete" ]; then
  echo "downloading the wheels of ${packages[*]} into $wh (once)" >&2
  rm -rf "$wh"
  python3.11 -m pip download --quiet --disable-pip-version-check --only-binary=:all: -d "$wh" "${packages[@]}"
  touch "$wh/.complete"
fi
uv=$dir/uv-venv/bin/uv
if [ ! -x "$uv" ]; then
  echo "installing uv from PyPI into $dir/uv-venv (once)" >&2
  python3.11 -m venv "$dir/uv-venv"
  "$dir/uv-venv/bin/pip" install --quiet --disable-pip-version-check uv==0.5.11
fi

# The lock (next to the wheelhouse: the build context): every wheel of the
# wheelhouse, pinned by hash, as `uv pip compile --generate-hashes` writes it.
python3 - "$wh" > "$dir/requirements.txt" <<'PY'
import hashlib, os, sys
wh = sys.argv[1]
for f in sorted(os.listdir(wh)):
    if f.endswith(".whl"):
        name, version = f.split("-")[:2]
        digest = hashlib.sha256(open(os.path.join(wh, f), "rb").read()).hexdigest()
        print(f"{name}=={version} \\\n    --hash=sha256:{digest}")
PY
wheels=$(ls "$wh"/*.whl | wc -l)
mb=$(du -sm --apparent-size "$wh" | cut -f1)
echo "wheelhouse: $wheels wheels, $mb MB; uv $("$uv" --version | cut -d' ' -f2); $(nproc) cores; median of $runs runs"

cargo build --release --quiet
bin=$PWD/target/release/boxwright
cat > "$work/recipe.toml" <<TOML
[image]
name = "deps"
[[layer]]
name = "python-deps"
[[layer.entry]]
dest = "/usr/local"
python = { lock = "requirements.txt", find_links = ["wheelhouse"], version = "3.11" }
TOML

# One command per case; "cold" empties the caches first.
boxwright_cold() { rm -rf "$work/bw-cache" "$work/bw-out"; boxwright_warm; }
boxwright_warm() {
  XDG_CACHE_HOME=$work/bw-cache "$bin" build --quiet --context "$dir" -o "$work/bw-out" "$work/recipe.toml"
}
uv_cold() { rm -rf "$work/uv-cache"; uv_warm; }
uv_warm() {
  rm -rf "$work/uv-target" "$work/umoci"
  "$uv" pip install --quiet --no-deps --offline --no-index --find-links "$wh" \
    --cache-dir "$work/uv-cache" --python python3.11 --target "$work/uv-target" \
    -r "$dir/requirements.txt"
  umoci init --layout "$work/umoci"
  umoci new --image "$work/umoci:deps"
  umoci insert --image "$work/umoci:deps" "$work/uv-target" /usr/local/lib/python3.11/site-packages
}
export -f boxwright_cold boxwright_warm uv_cold uv_warm
export work wh bin uv dir

# median of N runs of a function: prints "seconds peak_kb"
measure() {
  local out=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/time" bash -c "$1" > /dev/null 2> "$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
    out+=("$(cat "$work/time")")
  done
  printf '%s\n' "${out[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
cat "$wh"/*.whl > /dev/null  # warm the page cache

read -r t_bc rss_bc < <(measure boxwright_cold)
boxwright_cold > /dev/null
read -r t_bw rss_bw < <(measure boxwright_warm)
layer=$(ls -S "$work/bw-out/blobs/sha256" | head -1); s_bw=$(du -b "$work/bw-out/blobs/sha256/$layer" | cut -f1)
read -r t_uc rss_uc < <(measure uv_cold)
uv_cold > /dev/null
read -r t_uw rss_uw < <(measure uv_warm)
ulayer=$(ls -S "$work/umoci/blobs/sha256" | head -1); s_uv=$(du -b "$work/umoci/blobs/sha256/$ulayer" | cut -f1)
files=$(find "$work/uv-target" -type f | wc -l)

row() { printf '%-40s %8.2f s %8.1f MB RSS %8.1f MB layer\n' "$1" "$2" "$(echo "$3 / 1024" | bc -l)" "$(echo "$4 / 1000000" | bc -l)"; }
echo "installed: $files files"
row "boxwright build, cold" "$t_bc" "$rss_bc" "$s_bw"
row "boxwright build, nothing changed" "$t_bw" "$rss_bw" "$s_bw"
row "uv pip install + umoci insert, cold" "$t_uc" "$rss_uc" "$s_uv"
row "uv pip install + umoci insert, warm" "$t_uw" "$rss_uw" "$s_uv"
ratio() { echo "$1 / $2" | bc -l; }
printf 'ratio boxwright cold / uv+umoci cold:            %.2f (target <= 0.40)\n' "$(ratio "$t_bc" "$t_uc")"
printf 'ratio boxwright rebuild / uv+umoci cold:         %.2f (target <= 0.10)\n' "$(ratio "$t_bw" "$t_uc")"
printf 'ratio boxwright rebuild / uv+umoci warm:         %.2f\n' "$(ratio "$t_bw" "$t_uw")"
printf 'peak RSS boxwright: %.1f MB (target <= 128 MB; uv+umoci: %.1f MB)\n' "$(echo "$rss_bc / 1024" | bc -l)" "$(echo "$rss_uc / 1024" | bc -l)"
