#!/usr/bin/env bash
# Entrypoint of the `kafka` service of deploy/docker-compose.yml (image apache/kafka): one KRaft
# node, broker and controller, with SASL over TLS for clients and an ACL authorizer.
#
# Listeners:
#   CLIENT      :9092  SASL_SSL, SCRAM-SHA-512   the compose network (advertised kafka:9092)
#   HOST        :9094  SASL_SSL, SCRAM-SHA-512   published on the host's 127.0.0.1:9094 only
#   INTERNAL    localhost:9091  SASL_PLAINTEXT, PLAIN (user `broker`)   inter-broker, container only
#   CONTROLLER  localhost:9093  SASL_PLAINTEXT, PLAIN (user `broker`)   KRaft, container only
# Principals: `admin` (super user; its SCRAM credential is written when the storage is
# formatted, so kafka-init can log in to create the others) and `broker` (super user, this node
# talking to itself). Every other principal is allowed only what its ACLs say
# (allow.everyone.if.no.acl.found=false): deploy/kafka/acls.sh, made by deploy/kafka_acls.py.
#
# Needs: CLUSTER_ID, KAFKA_ADMIN_PASSWORD, KAFKA_BROKER_PASSWORD (letters, digits, - and _ only:
# they are written into a properties file), and /etc/kafka/secrets/broker.p12{,.password}
# from deploy/kafka/make-certs.sh.
set -euo pipefail

: "${CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}" "${KAFKA_BROKER_PASSWORD:?}"
for name in KAFKA_ADMIN_PASSWORD KAFKA_BROKER_PASSWORD; do
  if [[ ! "${!name}" =~ ^[A-Za-z0-9_-]{24,}$ || "${!name,,}" == *change-me* ]]; then
    echo "$name must be 24+ letters, digits, - or _ (deploy/kafka/make-passwords.sh)" >&2
    exit 2
  fi
done

secrets=/etc/kafka/secrets
for file in broker.p12 broker.p12.password; do
  [[ -r "$secrets/$file" ]] || {
    echo "$secrets/$file is missing: run deploy/kafka/make-certs.sh" >&2
    exit 2
  }
done
store_password="$(cat "$secrets/broker.p12.password")"

conf=/tmp/qorch-kafka
umask 077
mkdir -p "$conf"
plain_jaas="org.apache.kafka.common.security.plain.PlainLoginModule required \
username=\"broker\" password=\"$KAFKA_BROKER_PASSWORD\" user_broker=\"$KAFKA_BROKER_PASSWORD\";"
scram_jaas="org.apache.kafka.common.security.scram.ScramLoginModule required;"

cat > "$conf/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=CLIENT://:9092,HOST://:9094,INTERNAL://localhost:9091,CONTROLLER://localhost:9093
advertised.listeners=CLIENT://kafka:9092,HOST://localhost:9094,INTERNAL://localhost:9091
listener.security.protocol.map=CLIENT:SASL_SSL,HOST:SASL_SSL,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL

sasl.mechanism.controller.protocol=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$plain_jaas
listener.name.internal.sasl.enabled.mechanisms=PLAIN
listener.name.internal.plain.sasl.jaas.config=$plain_jaas
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=$scram_jaas
listener.name.host.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.host.scram-sha-512.sasl.jaas.config=$scram_jaas

ssl.keystore.type=PKCS12
ssl.keystore.location=$secrets/broker.p12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
ssl.client.auth=none
ssl.enabled.protocols=TLSv1.3,TLSv1.2

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:broker
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false

log.dirs=/var/lib/kafka/data
num.partitions=4
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES

# For the healthcheck: this node's own user, on the container-only listener.
cat > "$conf/internal-client.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="$KAFKA_BROKER_PASSWORD";
PROPERTIES

# Formats the data volume once; the admin's SCRAM credential is part of the first metadata.
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$conf/server.properties" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"

exec /opt/kafka/bin/kafka-server-start.sh "$conf/server.properties"
