#!/usr/bin/env bash
# Enrolls the node agents of deploy/docker-compose.yml: one node credential per pool, issued by
# the API (`qorch nodes enroll`, as the admin), kept in deploy/.env as NODE_CREDENTIAL_<POOL>,
# which the agents of that pool get as QORCH_NODE_CREDENTIAL. Then starts the whole stack.
#
#     deploy/enroll-nodes.sh [--rotate] [POOL ...]     # pools with agents in the compose file; default local-sv local-dm
#
# Run it after deploy/kafka/make-certs.sh and deploy/kafka/make-passwords.sh (the admin key,
# QORCH_ADMIN_KEY, comes from deploy/.env). It starts api and orchestrator (`docker compose up -d
# api orchestrator`, which builds the image if it is missing), enrolls each pool that has no
# credential in deploy/.env yet in the one-shot `cli` service (`qorch nodes enroll --pool POOL
# --name compose-node-POOL`, against http://api:8000 inside the compose network), appends it,
# and runs `docker compose up -d`. The credential is never printed. A pool already in deploy/.env
# is kept, so the script is safe to run again.
#
# --rotate: enroll a new credential for each pool even if it has one, replace it in deploy/.env,
# recreate the pool's agents with it (`up -d`), then revoke the old one (`qorch nodes revoke`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="${ENV_FILE:-$here/.env}"
rotate=0
if [[ "${1:-}" == "--rotate" ]]; then
  rotate=1
  shift
fi
pools=("$@")
[[ ${#pools[@]} -gt 0 ]] || pools=(local-sv local-dm)

[[ -f "$env_file" ]] || {
  echo "no $env_file: run deploy/kafka/make-certs.sh and deploy/kafka/make-passwords.sh first" >&2
  exit 2
}
compose=(docker compose --env-file "$env_file" -f "$here/docker-compose.yml")

umask 077
chmod 600 "$env_file"
tmp=""
trap 'rm -f "$tmp"' EXIT

var_of() {
  # The same stem rule as deploy/kafka/make-passwords.sh: local-sv -> NODE_CREDENTIAL_LOCAL_SV
  printf 'NODE_CREDENTIAL_%s' "$(tr 'a-z-' 'A-Z_' <<<"$1")"
}
value_of() {
  sed -n "s/^$1=//p" "$env_file" | tail -n 1
}

# Compose refuses to load the file while any pool's credential is unset, even for services that
# do not use it; a pool not enrolled yet gets a stand-in, given only to the commands that start
# no agent (a variable of the environment would override deploy/.env, so none is exported).
todo=()
stand_ins=()
before_agents() {
  env ${stand_ins[@]+"${stand_ins[@]}"} "${compose[@]}" "$@"
}
for pool in "${pools[@]}"; do
  [[ "$pool" =~ ^[a-z0-9][a-z0-9-]*$ ]] || { echo "not a pool name: $pool" >&2; exit 2; }
  var="$(var_of "$pool")"
  if [[ -z "$(value_of "$var")" ]]; then
    todo+=("$pool")
    stand_ins+=("$var=not-enrolled")
  elif [[ $rotate -eq 1 ]]; then
    todo+=("$pool")
  fi
done
if [[ ${#todo[@]} -eq 0 ]]; then
  echo "$env_file already has a node credential for: ${pools[*]} (--rotate replaces them)"
  "${compose[@]}" up -d
  exit 0
fi

before_agents up -d api orchestrator

added=()
revoke=()
for pool in "${todo[@]}"; do
  var="$(var_of "$pool")"
  old="$(value_of "$var")"
  if ! out="$(before_agents run --rm -T cli nodes enroll --pool "$pool" --name "compose-node-$pool")"; then
    echo "enrolling pool $pool failed" >&2
    exit 1
  fi
  credential="$(grep -oE 'nc_[0-9a-f]{16}\.[A-Za-z0-9_-]{43}' <<<"$out" | tail -n 1 || true)"
  [[ -n "$credential" ]] || { echo "no node credential in the answer for pool $pool" >&2; exit 1; }
  # Replace the line (or add it) through a private temporary file, then move it into place.
  tmp="$(mktemp "$env_file.XXXXXX")"
  grep -v "^$var=" "$env_file" >"$tmp" || true
  printf '%s=%s\n' "$var" "$credential" >>"$tmp"
  chmod 600 "$tmp"
  mv "$tmp" "$env_file"
  added+=("$var (${credential%%.*})")
  [[ -z "$old" ]] || revoke+=("${old%%.*}")
done
echo "written to $env_file: ${added[*]}"
[[ ${#revoke[@]} -eq 0 ]] || echo "to revoke once the agents run with the new ones: ${revoke[*]}"

# Every credential is in deploy/.env now: start the rest; agents whose credential changed are
# recreated (each finishes its fragment in hand first, still under the old credential).
"${compose[@]}" up -d

# Only then revoke the old ones: from now on nothing they signed counts.
for id in ${revoke[@]+"${revoke[@]}"}; do
  if [[ "$id" =~ ^nc_[0-9a-f]{16}$ ]]; then
    "${compose[@]}" run --rm -T cli nodes revoke "$id"
  else
    echo "not revoked: the old value was no node credential; see 'qorch nodes credentials'" >&2
  fi
done
