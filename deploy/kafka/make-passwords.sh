#!/usr/bin/env bash
# Writes deploy/.env, which docker compose reads for deploy/docker-compose.yml: one random
# secret per variable the compose file requires, and nothing else.
#
#     deploy/kafka/make-passwords.sh [POOL ...]     # pools with an agent principal; default local-sv local-dm
#
# A variable already in deploy/.env (or set to a value there by hand) is kept; missing ones are
# added. The file is mode 600 and ignored by git (deploy/.gitignore). Kafka passwords are
# hex: letters and digits survive the CLI's "[password=...]" syntax and properties files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="${ENV_FILE:-$here/../.env}"
pools=("$@")
[[ ${#pools[@]} -gt 0 ]] || pools=(local-sv local-dm)

names=(KAFKA_ADMIN_PASSWORD KAFKA_BROKER_PASSWORD KAFKA_API_PASSWORD KAFKA_ORCHESTRATOR_PASSWORD)
for pool in "${pools[@]}"; do
  [[ "$pool" =~ ^[a-z0-9][a-z0-9-]*$ ]] || { echo "not a pool name: $pool" >&2; exit 2; }
  # The same rule as deploy/kafka_acls.py's password_var: qorch-node-local-sv -> KAFKA_NODE_LOCAL_SV_PASSWORD
  stem="$(tr 'a-z-' 'A-Z_' <<<"$pool")"
  names+=("KAFKA_NODE_${stem}_PASSWORD")
done

umask 077
touch "$env_file"
chmod 600 "$env_file"
added=()
add() {
  grep -q "^$1=" "$env_file" && return 0
  printf '%s=%s\n' "$1" "$2" >>"$env_file"
  added+=("$1")
}
for name in "${names[@]}"; do
  add "$name" "$(openssl rand -hex 32)"
done
add POSTGRES_PASSWORD "$(openssl rand -hex 24)"
# The first admin API key (qorchestra refuses short, placeholder or low-entropy keys).
add QORCH_ADMIN_KEY "$(openssl rand -base64 33 | tr '+/' '-_')"

if [[ ${#added[@]} -gt 0 ]]; then
  echo "added to $env_file: ${added[*]}"
else
  echo "$env_file already has every variable"
fi
