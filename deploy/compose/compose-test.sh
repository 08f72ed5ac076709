#!/bin/sh
# make compose-test: the README's compose steps against a real Docker engine.
# Builds the images, starts the stack with fresh secrets (deploy/compose/
# init-env.sh into a temporary env file: your .env is left alone) on free
# loopback ports, ingests samples/products.csv through ./inbox, and checks:
# /fetch-data with the key, 401 without it, NATS refusing a client without
# credentials (and taking the admin's), the writer restarted, NATS stopped
# (the api serves and stays ready) and started, `down` then `up` with the
# data kept. It removes its containers and volumes at the end.
# Needs Docker with Compose v2+ and buildx, and python3.
set -eu
cd "$(dirname "$0")/../.."
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-rowpipe-compose-test}"
tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(free_port)
nats_port=$(free_port)
mon_port=$(free_port)
sh deploy/compose/init-env.sh "$tmp/env" >/dev/null
{
  echo "API_PUBLISH=127.0.0.1:$api_port"
  echo "NATS_PUBLISH=127.0.0.1:$nats_port"
  echo "NATS_MONITOR_PUBLISH=127.0.0.1:$mon_port"
} >>"$tmp/env"
dc() { docker compose --env-file "$tmp/env" "$@"; }
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then dc logs --no-color --tail 60 >&2 || true; fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT INT TERM
key=$(sed -n 's/^API_KEYS=//p' "$tmp/env")
admin=$(sed -n 's/^NATS_ADMIN_PASSWORD=//p' "$tmp/env")
base="http://127.0.0.1:$api_port"
start=$(date +%s)
step() { echo "compose-test [$(($(date +%s) - start))s] $*"; }
fail() { echo "compose-test: FAIL: $*" >&2; exit 1; }

rows=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline=""))) - 1)' samples/products.csv)
step "build and up (the README's steps)"
mkdir -p inbox && cp samples/products.csv inbox/
dc up -d --build --wait --wait-timeout 300

count() { # the count the api serves for products, or a status code
  curl -s -H "X-API-Key: $key" "$base/fetch-data?metadata_only=true" |
    python3 -c 'import json,sys
try: print(json.load(sys.stdin).get("count"))
except Exception: print("none")'
}
wait_count() {
  i=0
  until [ "$(count)" = "$rows" ]; do
    i=$((i + 1))
    [ "$i" -le 120 ] || fail "products never reached $rows records (last: $(count))"
    sleep 1
  done
}
step "ingest the sample through ./inbox: $rows rows"
wait_count
page=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "$base/fetch-data?limit=2")
[ "$page" = 200 ] || fail "/fetch-data with the key: $page"
nokey=$(curl -s -o /dev/null -w '%{http_code}' "$base/fetch-data?limit=2")
[ "$nokey" = 401 ] || fail "/fetch-data without a key: $nokey, want 401"
ready=$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")
[ "$ready" = 200 ] || fail "/readyz: $ready"

step "NATS refuses a client without credentials and takes the admin's"
nats_says() { # the server's answer to CONNECT with the given JSON, then PING
  python3 - "$nats_port" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rb")
f.readline()  # INFO
s.sendall(b"CONNECT " + sys.argv[2].encode() + b"\r\nPING\r\n")
print(f.readline().decode().strip())
PY
}
anon=$(nats_says '{"verbose":false,"pedantic":false}')
case "$anon" in *"Authorization Violation"*) ;; *) fail "NATS let a client without credentials in: $anon" ;; esac
authed=$(nats_says "{\"verbose\":false,\"pedantic\":false,\"user\":\"admin\",\"pass\":\"$admin\"}")
[ "$authed" = PONG ] || fail "NATS refused the admin: $authed"

step "restart the writer"
dc restart writer
dc up -d --wait --wait-timeout 120
wait_count

step "restart nats: the api serves from disk and stays ready meanwhile"
dc stop nats
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "$base/fetch-data?limit=2")
[ "$code" = 200 ] || fail "/fetch-data with NATS down: $code"
ready=$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")
[ "$ready" = 200 ] || fail "/readyz with NATS down: $ready"
dc start nats
dc up -d --wait --wait-timeout 120
wait_count

step "down, then up again: the data is kept"
gen=$(curl -s -H "X-API-Key: $key" "$base/fetch-data?metadata_only=true" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
dc down
dc up -d --wait --wait-timeout 120
wait_count
gen2=$(curl -s -H "X-API-Key: $key" "$base/fetch-data?metadata_only=true" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
[ "$gen" = "$gen2" ] || fail "generation $gen before down, $gen2 after up"
step "passed"
