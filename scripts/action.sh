#!/usr/bin/env bash
# The logic of the boxwright GitHub Action (action.yml), runnable anywhere:
#
#   scripts/action.sh resolve   # the version to install and its cache key
#   scripts/action.sh install   # put boxwright on PATH (release asset, else cargo install)
#   scripts/action.sh run       # build --push the recipe, write outputs (default)
#
# Inputs come as environment variables, as action.yml passes them:
#   INPUT_RECIPE      recipe to build (default recipes/r2d.toml)
#   INPUT_VARS        NAME=VALUE recipe variables: one per line (values may
#                     then hold spaces), or separated by spaces on one line
#   INPUT_TARGETS     --to references (white space separated)
#   INPUT_RECIPE_TARGETS  true (default): push to the recipe's [[target]]s
#                     too, TARGETS being extra destinations (one naming a
#                     recipe target's repository replaces its tags); false:
#                     push only to TARGETS
#   INPUT_VERIFY      true (default): HEAD every pushed reference afterwards
#   INPUT_PLATFORM    build only these platforms (linux/amd64,linux/arm64;
#                     commas, spaces or lines between them)
#   INPUT_BY_DIGEST   true: push by digest only, no tags (multi-platform jobs)
#   INPUT_EXTRA_ARGS  more `boxwright build` flags (white space separated)
#   INPUT_CACHE       true: the layer and blob cache is ~/.cache/boxwright
#                     (what action.yml keeps with actions/cache), unless
#                     extra-args name a --cache-dir or --no-cache; false:
#                     no layer cache
#   INPUT_CACHE_MAX   the layer cache's size bound (--cache-max)
#   INPUT_LOGINS      registries to log in to for this step, one per line:
#                     REGISTRY USERNAME_VAR PASSWORD_VAR, naming variables of
#                     the environment; NAME:base64 when the variable holds
#                     base64 of the value (DOCKERHUB_USERNAME_ENCODED:base64)
#   INPUT_SBOM        spdx or cyclonedx: attach an SBOM (none: no SBOM)
#   INPUT_PROVENANCE  true: attach SLSA provenance
#   INPUT_SIGNING_KEY the private key's PEM (a secret): sign the image and
#                     the SBOM and provenance as attestations; written to a
#                     0600 file of this step, removed at the end
#   INPUT_SIGNING_KEY_PASSWORD  the password of an encrypted key
#   INPUT_VERSION     install: a release (0.2.0, v0.2.0) or a git ref
#   BOXWRIGHT_RELEASE_URL  install: where releases are [default:
#                     https://github.com/OWNER/REPO/releases/download]; the
#                     asset is VERSION/boxwright-VERSION-TRIPLE.tar.gz with
#                     its .sha256, checked with sha256sum -c
#   BOXWRIGHT_GIT_URL resolve, install: where the action's repository is
#                     cloned from [default: https://github.com]
#   BOXWRIGHT         the binary to run [default: boxwright on PATH]
#
# Outputs (to $GITHUB_OUTPUT, else printed on stdout as name=value):
#   digest   the pushed image's digest (the index's for several platforms)
#   image    the first pushed target's repository pinned by digest (REPO@sha256:...)
#   refs     every reference pushed successfully, one per line
#   targets  JSON array, per target: reference, registry, ok, optional, digest,
#            error, bytes_sent, blobs_uploaded, blobs_mounted, blobs_present
#   verified true/false (empty without verify)
#   report   path of the whole `build --push --json` report
#
# Credentials: boxwright reads them from the variables the recipe's
# [[target]]s name (username_env/password_env with their encodings), from
# docker's config.json, or GITHUB_TOKEN/GITHUB_ACTOR for ghcr.io. The only
# ones handled here are INPUT_LOGINS': decoded, then given to `boxwright
# login` on stdin (the password) into a docker config of this step alone,
# a copy of the runner's that is removed at the end. In Actions, every
# decoded value (of INPUT_LOGINS, of every *_ENCODED variable and of every
# variable a recipe target names) is masked (::add-mask::) first, so that
# it could never show in a log. Nothing here runs with xtrace.
set -euo pipefail
set +x

prog="boxwright action"

# Data of a workflow command as the runner reads it back: `%`, CR and LF
# escaped, so a value can neither end the command nor start another.
esc() {
  local s=${1//%/%25}
  s=${s//$'\r'/%0D}
  printf '%s' "${s//$'\n'/%0A}"
}

# A line for the log: CR and LF become spaces, so an input cannot start a
# line of its own (which the runner would read as a workflow command).
oneline() {
  local s=${1//$'\r'/ }
  printf '%s' "${s//$'\n'/ }"
}

fail() {
  local code=$1
  shift
  if [ "${GITHUB_ACTIONS:-}" = "true" ]; then
    echo "::error title=${prog}::$(esc "$*")" >&2
  else
    echo "${prog}: error: $(oneline "$*")" >&2
  fi
  exit "$code"
}

note() { echo "${prog}: $(oneline "$*")" >&2; }

# true/false inputs; anything else is bad input.
truthy() {
  case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
    true | yes | 1 | on) return 0 ;;
    false | no | 0 | off | "") return 1 ;;
    *) fail 2 "expected true or false, got '$1'" ;;
  esac
}

# Write one output; multi-line values use a random delimiter.
output() {
  local name=$1 value=$2 delim
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    if [[ "$value" == *$'\n'* ]]; then
      delim="ghadelimiter_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
      printf '%s<<%s\n%s\n%s\n' "$name" "$delim" "$value" "$delim" >>"$GITHUB_OUTPUT"
    else
      printf '%s=%s\n' "$name" "$value" >>"$GITHUB_OUTPUT"
    fi
  else
    printf '%s=%s\n' "$name" "$value"
  fi
}

# Mask `value` line by line for the runner (in Actions only: elsewhere the
# command would print it).
mask() {
  [ "${GITHUB_ACTIONS:-}" = "true" ] || return 0
  local line
  while IFS= read -r line; do
    [ -n "$line" ] && printf '::add-mask::%s\n' "$(esc "$line")"
  done <<<"$1"
}

# Whether $1 is text a person could have typed: valid UTF-8 without
# control characters but tab (a plain value that happens to decode as
# base64 gives bytes, not a secret).
is_text() {
  local LC_ALL=C
  [ -n "$1" ] && [[ ! "${1//$'\t'/}" =~ [[:cntrl:]] ]] &&
    printf '%s' "$1" | iconv -f UTF-8 -t UTF-8 >/dev/null 2>&1
}

# In Actions, mask the decoded value of every *_ENCODED variable and of
# every variable the recipe names as a `username_env` or `password_env`
# (the runner masks secrets as stored, not what base64 of them decodes
# to). $1: the recipe.
mask_decoded() {
  [ "${GITHUB_ACTIONS:-}" = "true" ] || return 0
  local recipe=${1:-} name value decoded line LC_ALL=C
  local -a names=()
  while IFS= read -r name; do
    [[ "$name" == *_ENCODED ]] && names+=("$name")
  done < <(compgen -e)
  if [ -f "$recipe" ]; then
    # Every `username_env`/`password_env` value: as TOML reads it where a
    # Python with tomllib is at hand (any spelling of key and string), and
    # by pattern in any case (quoted either way, inline tables too).
    while IFS= read -r name; do
      [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && names+=("$name")
    done < <(
      grep -oE "(username|password)_env[[:space:]]*=[[:space:]]*[\"'][A-Za-z_][A-Za-z0-9_]*[\"']" "$recipe" |
        sed -E "s/.*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']\$/\\1/"
      python3 - "$recipe" 2>/dev/null <<'PY' || true
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    recipe = tomllib.load(f)
for t in recipe.get("target", []):
    for key in ("username_env", "password_env"):
        if isinstance(t.get(key), str):
            print(t[key])
PY
    )
  fi
  for name in "${names[@]}"; do
    value="${!name:-}"
    [ -n "$value" ] || continue
    # Decoded as boxwright decodes it: white space in the base64 ignored,
    # and a trailing line end dropped.
    decoded="$(tr -d ' \t\r\n' <<<"$value" | base64 -d 2>/dev/null | tr -d '\0' || true)"
    while [[ "$decoded" == *$'\n' || "$decoded" == *$'\r' ]]; do decoded="${decoded%?}"; done
    is_text "$decoded" || continue
    while IFS= read -r line; do
      [ -n "$line" ] && printf '::add-mask::%s\n' "$(esc "$line")"
    done <<<"$decoded"
  done
}

# The value of the variable a `logins` field names: NAME, NAME:plain or
# NAME:base64. Errors name the variable, never its value.
login_value() {
  local spec=$1 what=$2 name encoding value
  name="${spec%%:*}"
  encoding=plain
  [[ "$spec" == *:* ]] && encoding="${spec#*:}"
  [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail 2 "logins: '$name' ($what) is not an environment variable name"
  value="${!name:-}"
  [ -n "$value" ] || fail 2 "logins: environment variable $name ($what) is not set or empty"
  case "$encoding" in
    plain) ;;
    base64)
      value="$(printf '%s' "$value" | tr -d ' \t\r\n' | base64 -d 2>/dev/null)" ||
        fail 2 "logins: environment variable $name ($what) is not valid base64"
      [ -n "$value" ] || fail 2 "logins: environment variable $name ($what) decodes to nothing"
      ;;
    *) fail 2 "logins: $name:$encoding: the encoding is plain or base64" ;;
  esac
  printf '%s' "$value"
}

# What the step made and removes when it ends, whichever made it first:
# the signing key's directory and the logins' docker config. One trap for
# both, so that setting it for one keeps the other.
key_dir=""
login_dir=""
cleanup() {
  [ -z "$key_dir" ] || rm -rf "$key_dir"
  [ -z "$login_dir" ] || rm -rf "$login_dir"
}

# Log in to each INPUT_LOGINS registry into a docker config of this step
# (a copy of the runner's), which DOCKER_CONFIG then names. $1: boxwright.
login_all() {
  local bw=$1 line registry user_spec pass_spec rest user pass src dir
  local -a lines=()
  while IFS= read -r line; do lines+=("$line"); done < <(split_lines "${INPUT_LOGINS:-}")
  [ ${#lines[@]} -gt 0 ] || return 0
  # Every value is decoded and masked before any login runs.
  local -a registries=() users=() passwords=()
  for line in "${lines[@]}"; do
    read -r registry user_spec pass_spec rest <<<"$line"
    [ -n "$pass_spec" ] && [ -z "$rest" ] ||
      fail 2 "logins: '$registry ...' is not REGISTRY USERNAME_VAR PASSWORD_VAR"
    user="$(login_value "$user_spec" "user name of $registry")" || exit $?
    pass="$(login_value "$pass_spec" "password of $registry")" || exit $?
    mask "$user"
    mask "$pass"
    registries+=("$registry")
    users+=("$user")
    passwords+=("$pass")
  done
  src="${DOCKER_CONFIG:-$HOME/.docker}"
  dir="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/boxwright-docker.XXXXXX")"
  login_dir=$dir
  trap cleanup EXIT
  # The runner's config without its credential helpers: `login` would
  # store these credentials in a machine-wide helper, past this step.
  if [ -f "$src/config.json" ]; then
    jq 'del(.credsStore, .credHelpers)' "$src/config.json" >"$dir/config.json" ||
      fail 2 "$src/config.json is not valid JSON"
  fi
  export DOCKER_CONFIG="$dir"
  local i
  for i in "${!registries[@]}"; do
    printf '%s' "${passwords[$i]}" | "$bw" login "${registries[$i]}" -u "${users[$i]}" --password-stdin ||
      fail 1 "logins: logging in to ${registries[$i]} failed; see the error above"
  done
}

# The non-empty lines of a list input, trimmed; # comments skipped.
split_lines() {
  local line
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    [ -n "$line" ] && [[ "$line" != \#* ]] && printf '%s\n' "$line"
  done <<<"$1"
}

# Split a list input: one item per line when it has several lines,
# else white space separated. Empty lines and # comments are skipped.
split_list() {
  local input=$1 line word
  if [[ "$input" == *$'\n'* ]]; then
    while IFS= read -r line; do
      line="${line#"${line%%[![:space:]]*}"}"
      line="${line%"${line##*[![:space:]]}"}"
      [ -n "$line" ] && [[ "$line" != \#* ]] && printf '%s\n' "$line"
    done <<<"$input"
  else
    # Split on white space only: a `*` in an input is not a file pattern.
    local -a words
    read -r -a words <<<"$input"
    for word in "${words[@]}"; do printf '%s\n' "$word"; done
  fi
}

triple() {
  local arch os
  arch="$(uname -m)"
  case "$arch" in arm64) arch=aarch64 ;; esac
  case "$(uname -s)" in
    Linux) os=unknown-linux-musl ;; # the release's static binaries
    Darwin) os=apple-darwin ;;
    *) os=unknown ;;
  esac
  echo "${arch}-${os}"
}

# owner/repo and ref of the action: from the action's path
# (.../_actions/OWNER/REPO/REF), which is where this very script was
# checked out; else from the github context, which in a composite action
# nested in another may name the outer one.
action_source() {
  local repo="${ACTION_REPOSITORY:-}" ref="${ACTION_REF:-}" path="${GITHUB_ACTION_PATH:-}"
  if [[ "$path" == */_actions/*/*/* ]]; then
    local rest="${path#*/_actions/}"
    repo="$(cut -d/ -f1-2 <<<"$rest")"
    ref="$(cut -d/ -f3- <<<"$rest")"
  fi
  echo "${repo}|${ref}"
}

cmd_resolve() {
  local src repo ref version key kind sha
  src="$(action_source)"
  repo="${src%%|*}"
  ref="${src#*|}"
  version="${INPUT_VERSION:-$ref}"
  if [ -z "$repo" ]; then
    # A local action (uses: ./): build the checked-out source.
    local root="${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/.." && pwd)}"
    sha="$(cd "$root" && find Cargo.toml Cargo.lock src schema -type f -print0 | sort -z |
      xargs -0 sha256sum | sha256sum | cut -c1-16)"
    kind=local
    key="boxwright-$(triple)-local-${sha}"
  elif [[ "$version" =~ ^v?[0-9]+\.[0-9]+\.[0-9]+([-+].*)?$ ]]; then
    kind=release
    version="v${version#v}"
    key="boxwright-$(triple)-$(key_part "$version")"
  elif [[ "$version" =~ ^[0-9a-f]{40}$ ]]; then
    kind=rev
    key="boxwright-$(triple)-${version}"
  else
    # A branch or a moving tag (`v0`): key on the commit it names now. One
    # that cannot be looked up is built for this run only.
    local refs
    version="${version:-main}"
    refs="$(git ls-remote "${BOXWRIGHT_GIT_URL:-https://github.com}/${repo}" "refs/heads/${version}" "refs/tags/${version}" \
      "refs/tags/${version}^{}" 2>/dev/null || true)"
    if grep -q "refs/tags/${version}" <<<"$refs"; then
      kind=tag
      sha="$(grep "refs/tags/${version}^{}" <<<"$refs" || grep "refs/tags/${version}\$" <<<"$refs")"
    else
      kind=branch
      sha="$(grep "refs/heads/${version}\$" <<<"$refs" || true)"
    fi
    sha="$(cut -c1-40 <<<"$sha")"
    key="boxwright-$(triple)-$(key_part "$version")-${sha:-unresolved-${GITHUB_RUN_ID:-$$}}"
  fi
  output kind "$kind"
  output repository "$repo"
  output version "$version"
  output key "$key"
  layers_keys
}

# `value` (a branch, tag or version the action is used at) as a part of an
# actions/cache key, which fails the step on a comma, and a git ref may hold
# one (`uses: acme/boxwright@ci,fast`), or any of `'"#$&;!()=<>`: itself when
# it is at most 64 letters, digits, `.`, `_`, `/`, `+` and `-`; else its
# first 64 of them (others become `_`) and its POSIX cksum, so that refs
# alike (`ci,fast`, `ci_fast`) keep apart.
key_part() {
  local value=$1
  if [ "${#value}" -le 64 ] && [[ "$value" =~ ^[A-Za-z0-9._/+-]*$ ]]; then
    printf '%s' "$value"
    return
  fi
  printf '%s-%s' "$(printf '%s' "$value" | LC_ALL=C tr -c 'A-Za-z0-9._/+-' '_' | cut -c1-64)" \
    "$(printf '%s' "$value" | cksum | cut -d' ' -f1)"
}

# The layer cache's key, per runner OS and architecture, workflow, job and
# commit, and the prefix that restores the newest of the same workflow and
# job. actions/cache fails the step on a key with a comma or over 512
# characters, and a workflow's name may hold either: the name goes in as
# its first 64 letters, digits, `.`, `_` and `-` (others become `_`) and
# its POSIX cksum, so that names alike stay apart.
layers_keys() {
  local name=${GITHUB_WORKFLOW:-} shown hash prefix
  shown="$(printf '%s' "$name" | LC_ALL=C tr -c 'A-Za-z0-9._-' '_' | cut -c1-64)"
  hash="$(printf '%s' "$name" | cksum | cut -d' ' -f1)"
  prefix="boxwright-layers-${RUNNER_OS:-}-${RUNNER_ARCH:-}-${shown}-${hash}-${GITHUB_JOB:-}-"
  output layers-restore "$prefix"
  output layers-key "${prefix}${GITHUB_SHA:-}"
}

cmd_install() {
  local dest="${BOXWRIGHT_INSTALL_DIR:-$HOME/.cargo/bin}"
  local kind="${RESOLVED_KIND:-local}" repo="${RESOLVED_REPOSITORY:-}" version="${RESOLVED_VERSION:-}"
  mkdir -p "$dest"
  [ -n "${GITHUB_PATH:-}" ] && echo "$dest" >>"$GITHUB_PATH"
  if [ -n "${BOXWRIGHT:-}" ]; then
    [ -x "$BOXWRIGHT" ] || fail 2 "BOXWRIGHT=$BOXWRIGHT is not an executable file"
    note "using $BOXWRIGHT"
    output path "$BOXWRIGHT"
    return 0
  fi
  if [ "${CACHE_HIT:-}" = "true" ] && [ -x "$dest/boxwright" ]; then
    note "boxwright from the cache: $("$dest/boxwright" --version)"
    output path "$dest/boxwright"
    return 0
  fi
  if [ "$kind" = release ]; then
    local asset="boxwright-${version}-$(triple).tar.gz" tmp
    local url="${BOXWRIGHT_RELEASE_URL:-https://github.com/${repo}/releases/download}/${version}/${asset}"
    tmp="$(mktemp -d)"
    # An asset is used only with its checksum; without one, build from source.
    if curl -fsSL --retry 3 -o "$tmp/$asset" "$url" && curl -fsSL --retry 3 -o "$tmp/$asset.sha256" "$url.sha256"; then
      if ! (cd "$tmp" && sha256sum -c --status <(awk -v f="$asset" '{print $1"  "f}' "$asset.sha256")); then
        rm -rf "$tmp"
        fail 1 "$asset does not match its .sha256"
      fi
      tar -xzf "$tmp/$asset" -C "$tmp"
      install -m 0755 "$(find "$tmp" -type f -name boxwright | head -n1)" "$dest/boxwright"
      rm -rf "$tmp"
      note "installed $asset"
      output path "$dest/boxwright"
      return 0
    fi
    rm -rf "$tmp"
    note "no release asset $asset with its .sha256; building with cargo"
  fi
  command -v cargo >/dev/null || fail 1 "cargo is needed to build boxwright (add dtolnay/rust-toolchain before this action)"
  local root
  root="$(dirname "$dest")"
  case "$kind" in
    local) cargo install --locked --force --root "$root" --path "${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/.." && pwd)}" ;;
    release) cargo install --locked --force --root "$root" --git "${BOXWRIGHT_GIT_URL:-https://github.com}/${repo}" --tag "$version" boxwright ;;
    rev) cargo install --locked --force --root "$root" --git "${BOXWRIGHT_GIT_URL:-https://github.com}/${repo}" --rev "$version" boxwright ;;
    tag) cargo install --locked --force --root "$root" --git "${BOXWRIGHT_GIT_URL:-https://github.com}/${repo}" --tag "$version" boxwright ;;
    *) cargo install --locked --force --root "$root" --git "${BOXWRIGHT_GIT_URL:-https://github.com}/${repo}" --branch "${version:-main}" boxwright ;;
  esac
  output path "$dest/boxwright"
}

# The supply-chain flags (INPUT_SBOM, INPUT_PROVENANCE, INPUT_SIGNING_KEY)
# onto `args`; the key goes into a 0600 file under $1, removed on exit.
supply_args() {
  case "${INPUT_SBOM:-}" in
    "" | none) ;;
    spdx | cyclonedx) args+=(--sbom "$INPUT_SBOM") ;;
    *) fail 2 "sbom: expected spdx, cyclonedx or none, got '$INPUT_SBOM'" ;;
  esac
  if truthy "${INPUT_PROVENANCE:-false}"; then args+=(--provenance); fi
  [ -n "${INPUT_SIGNING_KEY:-}" ] || return 0
  local line
  while IFS= read -r line; do
    if [ -n "$line" ] && [[ "$line" != -----* ]]; then mask "$line"; fi
  done <<<"$INPUT_SIGNING_KEY"
  key_dir="$(mktemp -d "$1/boxwright-key.XXXXXX")"
  trap cleanup EXIT
  (umask 077 && printf '%s\n' "$INPUT_SIGNING_KEY" >"$key_dir/key.pem")
  args+=(--sign-key "$key_dir/key.pem")
  if [ -n "${INPUT_SIGNING_KEY_PASSWORD:-}" ]; then
    mask "$INPUT_SIGNING_KEY_PASSWORD"
    args+=(--key-password-env INPUT_SIGNING_KEY_PASSWORD)
  fi
}

# In Actions, what was attached on which registry, into the step summary.
supply_summary() {
  [ -n "${GITHUB_STEP_SUMMARY:-}" ] && jq -e '.supply' "$1" >/dev/null 2>&1 || return 0
  {
    echo
    echo "### Signatures and attestations"
    echo
    echo "| repository | attached | listed by | ok |"
    echo "|---|---|---|---|"
    jq -r '.supply.repositories[] | "| \(.registry)/\(.repository) | \([.artifacts[].kind] | join(", ")) | \(.mode // "-") | \(if .ok then "yes" else "no: \(.error // "failed" | gsub("[\\r\\n|<>\\[\\]()!`]"; " "))" end) |"' "$1"
  } >>"$GITHUB_STEP_SUMMARY"
}

# The `name` of a recipe's [image] table (empty when not a plain string).
image_name() {
  awk '/^[[:space:]]*\[/ { s = ($0 ~ /^[[:space:]]*\[image\][[:space:]]*$/) }
       s && /^[[:space:]]*name[[:space:]]*=[[:space:]]*"[^"$]*"/ {
         sub(/^[^"]*"/, ""); sub(/".*$/, ""); print; exit }' "$1"
}

cmd_run() {
  # Needed to read the report once the image is pushed: checked first.
  command -v jq >/dev/null || fail 1 "jq is needed (it is on GitHub's runners; install it on this one)"
  local bw="${BOXWRIGHT:-boxwright}"
  local recipe="${INPUT_RECIPE:-recipes/r2d.toml}"
  [ -f "$recipe" ] || fail 2 "recipe $recipe not found (input 'recipe', relative to $(pwd))"
  local -a args=(build "$recipe" --push --json)
  local item
  while IFS= read -r item; do
    [[ "$item" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || fail 2 "vars: '${item%%=*}' is not NAME=VALUE"
    args+=(--set "$item")
  done < <(split_list "${INPUT_VARS:-}")
  local to=0
  while IFS= read -r item; do
    args+=(--to "$item")
    to=$((to + 1))
  done < <(split_list "${INPUT_TARGETS:-}")
  local -a extra=()
  # Every line: a YAML block may spread the flags over several.
  read -r -d '' -a extra <<<"${INPUT_EXTRA_ARGS:-}" || true
  for item in "${extra[@]}"; do
    case "$item" in --to | --to=*) to=$((to + 1)) ;; esac
  done
  # `build --to` replaces the recipe's targets; the action keeps them unless told.
  if truthy "${INPUT_RECIPE_TARGETS:-true}"; then
    [ "$to" -gt 0 ] && args+=(--recipe-targets)
  elif [ "$to" -eq 0 ]; then
    fail 2 "recipe-targets: false needs targets: without them the image would go nowhere"
  fi
  # Platforms separated by commas, white space or lines (a YAML block), as
  # docker/build-push-action takes them: one comma-separated --platform.
  local -a platforms=()
  local platform_list=${INPUT_PLATFORM:-}
  platform_list=${platform_list//,/ }
  read -r -d '' -a platforms <<<"${platform_list//$'\r'/ }" || true
  [ ${#platforms[@]} -gt 0 ] && args+=(--platform "$(IFS=,; printf '%s' "${platforms[*]}")")
  truthy "${INPUT_BY_DIGEST:-false}" && args+=(--by-digest)
  local verify=false
  truthy "${INPUT_VERIFY:-true}" && verify=true && args+=(--verify)
  args+=("${extra[@]}")
  # The cache where action.yml keeps it, whatever XDG_CACHE_HOME says.
  local cache=true max=true
  for item in "${extra[@]}"; do
    case "$item" in
      --cache-dir | --cache-dir=* | --no-cache) cache=false ;;
      --cache-max | --cache-max=*) max=false ;;
    esac
  done
  if truthy "${INPUT_CACHE:-true}"; then
    [ "$cache" = true ] && args+=(--cache-dir "$HOME/.cache/boxwright/blobs")
  elif [ "$cache" = true ]; then
    args+=(--no-cache)
  fi
  [ "$max" = true ] && [ -n "${INPUT_CACHE_MAX:-}" ] && args+=(--cache-max "$INPUT_CACHE_MAX")
  # `build --push` without -o keeps no layout; the action keeps one where
  # `build` puts it (out/<image name>) for later steps, unless told where.
  local keep=true
  for item in "${extra[@]}"; do
    case "$item" in -o | -o* | --output | --output=* | --no-layout) keep=false ;; esac
  done
  if [ "$keep" = true ]; then
    local name
    name="$(image_name "$recipe")"
    args+=(-o "out/${name:-$(basename "$recipe" .toml)}")
  fi

  local dir="${RUNNER_TEMP:-${TMPDIR:-/tmp}}"
  supply_args "$dir"
  mask_decoded "$recipe"
  login_all "$bw"
  local report
  report="$(mktemp "$dir/boxwright-report.XXXXXX")"
  mv "$report" "$report.json"
  report="$report.json"
  note "$bw ${args[*]}"
  local code=0
  "$bw" "${args[@]}" >"$report" || code=$?
  if ! jq -e '.push.digest' "$report" >/dev/null 2>&1; then
    fail "$((code == 0 ? 1 : code))" "boxwright build --push failed (exit $code) before pushing; see the error above"
  fi
  local digest refs targets image verified=""
  digest="$(jq -r '.push.digest' "$report")"
  refs="$(jq -r '.push.targets[] | select(.ok) | .reference' "$report")"
  targets="$(jq -c '[.push.targets[] | {reference, registry, ok, optional, digest, error,
    bytes_sent, blobs_uploaded, blobs_mounted, blobs_present}]' "$report")"
  image="$(jq -r '[.push.targets[] | select(.ok) | .reference][0] // empty
    | sub("@.*$"; "")
    | if (split("/") | last | contains(":")) then sub(":[^:/]*$"; "") else . end' "$report")"
  [ -n "$image" ] && image="${image}@${digest}"
  if [ "$verify" = true ]; then
    verified="$(jq -r 'if .verify then (.verify.ok | tostring) else "false" end' "$report")"
  fi
  # An image no target holds has no digest to hand on.
  [ -n "$refs" ] || digest=""
  output digest "$digest"
  output image "$image"
  output refs "$refs"
  output targets "$targets"
  output verified "$verified"
  output report "$report"
  supply_summary "$report"
  jq -r '.push.targets[] | select(.ok | not) | "\(.reference): \(.error // "failed")"' "$report" |
    while IFS= read -r line; do
      if [ "${GITHUB_ACTIONS:-}" = "true" ]; then echo "::warning title=${prog}::$(esc "$line")" >&2; fi
    done
  return "$code"
}

case "${1:-run}" in
  resolve) cmd_resolve ;;
  install) cmd_install ;;
  run) cmd_run ;;
  *) fail 2 "unknown command '$1' (resolve, install, run)" ;;
esac
