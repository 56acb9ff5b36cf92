#!/usr/bin/env bash
# Scale benchmark: inputs of size N and 2N, where time and peak RSS should
# grow at most twofold.
#   python   a pylock.toml of N tiny pure wheels, found through find_links
#            (a wheel not named by the lock is matched by name and version),
#            in one layer (split = "one"), --no-cache
#   deep     a tree of N directories one inside the other, a file in each,
#            in a layer with split = "auto", --no-cache (the kernel resolves
#            each path from the top, so this one grows with N squared; a
#            path's 4096 bytes bound it)
#   cache    a nothing-changed rebuild of a 50-layer recipe against a layer
#            cache already holding N other entries (every build prunes the
#            cache, so reads every entry), and against its own small cache
# Prints the median wall time and peak RSS of each, and the 2N / N ratios.
#
# Usage: benches/scale.sh   (RUNS=3, SCALE_PACKAGES=1200, SCALE_DEPTH=500,
#                           SCALE_ENTRIES=5000; a path is at most 4096 bytes,
#                           so SCALE_DEPTH at most about 1000; BOXWRIGHT_BIN
#                           to time another build of boxwright)
# Needs: GNU time, bc, python3 (Debian packages time, bc, python3).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
packages=${SCALE_PACKAGES:-1200}
depth=${SCALE_DEPTH:-500}
entries=${SCALE_ENTRIES:-5000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bin=${BOXWRIGHT_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$PWD/target/release/boxwright
fi

# one timed run: prints "seconds peak_kb"
timed() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
  cat "$work/time"
}
# median of RUNS runs of CMD: prints "seconds peak_kb"
median() {
  local i
  for i in $(seq "$runs"); do timed "$@"; done | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
row() { printf '%-52s %8.2f s %8.1f MB RSS\n' "$1" "$2" "$(echo "$3 / 1024" | bc -l)"; }
ratio() { printf '%-52s time x%.2f, RSS x%.2f (at most about x2)\n' "$1" "$(echo "$4 / $2" | bc -l)" "$(echo "$5 / $3" | bc -l)"; }

# python: N and 2N packages
python_lock() { # DIR N: N wheels in DIR/wheels, a lock naming none of them, a recipe
  python3 - "$1" "$2" <<'PY'
import os, sys, zipfile
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{out}/wheels")
lock = ['lock-version = "1.0"']
for i in range(n):
    name = f"pkg{i:05d}"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(f"{out}/wheels/{name}-1.0-py3-none-any.whl", "w") as z:
        z.writestr(f"{name}/__init__.py", f"X = {i}\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    lock.append(f'[[packages]]\nname = "{name}"\nversion = "1.0"')
open(f"{out}/pylock.toml", "w").write("\n".join(lock) + "\n")
open(f"{out}/recipe.toml", "w").write('[image]\nname = "py"\n[[layer]]\nname = "deps"\n[layer.python]\n'
    'lock = "pylock.toml"\nversion = "3.11"\nfind_links = ["wheels"]\nsplit = "one"\n')
PY
}
python_lock "$work/py1" "$packages"
python_lock "$work/py2" $((packages * 2))
read -r t1 r1 < <(median "$bin" build --quiet --no-cache --context "$work/py1" -o "$work/out" "$work/py1/recipe.toml")
read -r t2 r2 < <(median "$bin" build --quiet --no-cache --context "$work/py2" -o "$work/out" "$work/py2/recipe.toml")
echo "median of $runs runs, $(nproc) cores"
row "python lock, $packages packages (find_links)" "$t1" "$r1"
row "python lock, $((packages * 2)) packages (find_links)" "$t2" "$r2"
ratio "python lock, 2N / N" "$t1" "$r1" "$t2" "$r2"

# deep: N and 2N directories deep, split = "auto"
deep() { # DIR N
  python3 - "$1" "$2" <<'PY'
import os, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{out}/tree")
open(f"{out}/recipe.toml", "w").write('[image]\nname = "deep"\n[[layer]]\nname = "tree"\n'
    'split = "auto"\n[[layer.entry]]\nsrc = "tree"\ndest = "/t"\n')
os.chdir(f"{out}/tree")
for i in range(n):
    os.mkdir("d")
    os.chdir("d")
    open("f.so" if i % 2 else "f.py", "w").write("x")
PY
}
deep "$work/deep1" "$depth"
deep "$work/deep2" $((depth * 2))
read -r t1 r1 < <(median "$bin" build --quiet --no-cache --context "$work/deep1" -o "$work/out" "$work/deep1/recipe.toml")
read -r t2 r2 < <(median "$bin" build --quiet --no-cache --context "$work/deep2" -o "$work/out" "$work/deep2/recipe.toml")
row "split = \"auto\", a tree $depth directories deep" "$t1" "$r1"
row "split = \"auto\", a tree $((depth * 2)) directories deep" "$t2" "$r2"
ratio "deep tree, 2N / N" "$t1" "$r1" "$t2" "$r2"

# cache: a small recipe rebuilt against N and 2N other entries
layers() { # DIR N: a recipe of N one-file layers whose content depends on ${V}
  mkdir -p "$1"
  { printf '[image]\nname = "l"\n[vars]\nV = "0"\n'
    for i in $(seq "$2"); do
      printf '[[layer]]\nname = "l%s"\n[[layer.entry]]\ncontent = "layer %s ${V}"\ndest = "/f%s"\n' "$i" "$i" "$i"
    done; } > "$1/recipe.toml"
}
layers "$work/fill" 1000
layers "$work/small" 50
fill() { # CACHE N: N entries from builds of the 1000-layer recipe
  local v
  for v in $(seq "$(( $2 / 1000 ))"); do
    "$bin" build --quiet --cache-dir "$1" --context "$work/fill" --set "V=$v" -o "$work/out" "$work/fill/recipe.toml" > /dev/null
  done
}
rebuild() { # CACHE: median of the small recipe rebuilt with nothing changed
  "$bin" build --quiet --cache-dir "$1" --context "$work/small" -o "$work/out" "$work/small/recipe.toml" > /dev/null
  sleep 2 # a layer stored within two seconds is hashed again (see the README)
  median "$bin" build --quiet --cache-dir "$1" --context "$work/small" -o "$work/out" "$work/small/recipe.toml"
}
fill "$work/c1" "$entries"
fill "$work/c2" $((entries * 2))
read -r t0 r0 < <(rebuild "$work/c0")
read -r t1 r1 < <(rebuild "$work/c1")
read -r t2 r2 < <(rebuild "$work/c2")
row "rebuild of 50 layers, own cache" "$t0" "$r0"
row "rebuild of 50 layers, cache of $entries other entries" "$t1" "$r1"
row "rebuild of 50 layers, cache of $((entries * 2)) other entries" "$t2" "$r2"
ratio "rebuild against a cache, 2N / N" "$t1" "$r1" "$t2" "$r2"
