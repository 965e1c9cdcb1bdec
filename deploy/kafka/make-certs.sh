#!/usr/bin/env bash
# A throwaway CA and the broker's TLS certificate for deploy/docker-compose.yml (openssl only).
#
#     deploy/kafka/make-certs.sh            # writes deploy/kafka/certs/ once; FORCE=1 redoes it
#
# certs/ca.crt              the CA certificate: what every client trusts (QORCH_KAFKA_SSL_CA_LOCATION)
# certs/ca.key              the CA's key: signs the broker certificate, then is needed no more
#                           (mode 600, mounted nowhere)
# certs/broker/broker.p12   the broker's key and certificate chain (PKCS#12), for the names
#                           kafka (compose network), localhost and 127.0.0.1 (the host port)
# certs/broker/broker.p12.password   its random password
#
# Everything here is generated and ignored by git (deploy/.gitignore). The broker container
# runs as another user than you, so the files it reads are world-readable: this CA is for one
# machine's compose stack, never for a shared or production cluster (there, use the cluster's
# own PKI, e.g. Strimzi's cluster CA: docs/deployment.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/certs}"
days="${CERT_DAYS:-397}"

if [[ -e "$out/ca.crt" && "${FORCE:-0}" != 1 ]]; then
  echo "$out already holds certificates; FORCE=1 $0 makes new ones" >&2
  exit 0
fi
command -v openssl >/dev/null || { echo "openssl is needed" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/broker"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
  -days "$days" -subj "/CN=qorchestra throwaway Kafka CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
  -subj "/CN=kafka" -keyout "$work/broker.key" -out "$work/broker.csr" 2>/dev/null
cat > "$work/broker.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:kafka,DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in "$work/broker.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
  -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
  -extfile "$work/broker.ext" -out "$work/broker.crt" 2>/dev/null

openssl rand -hex 24 > "$out/broker/broker.p12.password"
openssl pkcs12 -export -name kafka -in "$work/broker.crt" -inkey "$work/broker.key" \
  -certfile "$out/ca.crt" -passout "file:$out/broker/broker.p12.password" \
  -out "$out/broker/broker.p12"

openssl verify -CAfile "$out/ca.crt" "$work/broker.crt" >/dev/null
chmod 755 "$out" "$out/broker"
chmod 644 "$out/ca.crt" "$out/broker/broker.p12" "$out/broker/broker.p12.password"
chmod 600 "$out/ca.key"
echo "wrote $out: ca.crt (trusted by the clients), broker/ (mounted into the broker)"
