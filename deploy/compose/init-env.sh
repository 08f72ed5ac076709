#!/bin/sh
# Writes .env for docker compose: a new API key and one NATS password per
# role (ingester, writer, admin), 48 random hex characters each. It never
# overwrites an existing .env (move it away first to start over).
#
#   sh deploy/compose/init-env.sh [path, default .env]
set -eu
out="${1:-.env}"
if [ -e "$out" ]; then
  echo "init-env: $out exists; not overwriting it (remove it to make new secrets)" >&2
  exit 1
fi
secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
umask 077
{
  echo "# Made by deploy/compose/init-env.sh. Git ignores this file; keep it secret."
  echo "API_KEYS=$(secret)"
  echo "NATS_INGESTER_PASSWORD=$(secret)"
  echo "NATS_WRITER_PASSWORD=$(secret)"
  echo "NATS_ADMIN_PASSWORD=$(secret)"
} > "$out"
echo "init-env: wrote $out (API_KEYS, NATS_INGESTER_PASSWORD, NATS_WRITER_PASSWORD, NATS_ADMIN_PASSWORD)"
