#!/usr/bin/env bash
# Entrypoint of the one-shot `kafka-init` service of deploy/docker-compose.yml (image
# apache/kafka): logs in as the super user `admin` over SASL_SSL and runs deploy/kafka/acls.sh,
# which creates the SCRAM-SHA-512 user of each role, the topics and the ACLs with the Kafka CLI
# tools (kafka-configs.sh, kafka-topics.sh, kafka-acls.sh). Running it again changes nothing
# (passwords are set again from the environment).
#
# Needs: KAFKA_ADMIN_PASSWORD and each role's password variable (see acls.sh), PARTITIONS,
# REPLICATION, BOOTSTRAP (default kafka:9092) and the CA certificate at CA_FILE.
set -euo pipefail

: "${KAFKA_ADMIN_PASSWORD:?}" "${PARTITIONS:?}" "${REPLICATION:?}"
BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
CA_FILE="${CA_FILE:-/etc/kafka/secrets/ca.crt}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Every password this script hands out: 24+ characters, no placeholder, and only characters
# that survive the CLI's "[password=...]" syntax and a properties file unquoted.
for name in KAFKA_ADMIN_PASSWORD $(grep -o 'KAFKA_[A-Z0-9_]*_PASSWORD' "$here/acls.sh" | sort -u); do
  value="${!name:-}"
  if [[ ! "$value" =~ ^[A-Za-z0-9_-]{24,}$ || "${value,,}" == *change-me* ]]; then
    echo "$name must be set to 24+ letters, digits, - or _ (deploy/kafka/make-passwords.sh)" >&2
    exit 2
  fi
done

umask 077
admin_config="$(mktemp)"
trap 'rm -f "$admin_config"' EXIT
cat > "$admin_config" <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$CA_FILE
PROPERTIES
# Used by acls.sh.
ADMIN=(--bootstrap-server "$BOOTSTRAP" --command-config "$admin_config")
export KAFKA_BIN PARTITIONS REPLICATION

echo "waiting for $BOOTSTRAP"
for attempt in $(seq 1 60); do
  if "$KAFKA_BIN/kafka-broker-api-versions.sh" "${ADMIN[@]}" >/dev/null 2>&1; then
    break
  fi
  [[ $attempt == 60 ]] && { echo "no answer from $BOOTSTRAP as admin" >&2; exit 1; }
  sleep 2
done

# shellcheck source=acls.sh
source "$here/acls.sh"
echo "users, topics and ACLs are in place:"
"$KAFKA_BIN/kafka-acls.sh" "${ADMIN[@]}" --list
