#!/usr/bin/env bash
# make demo: start the local stand-ins (PostgreSQL 15, moto, the IMDS mock, a registry), put the node's secrets in
# moto's Secrets Manager, then show cl-agent rendering the node's files (secrets masked) and its preflight checks.
# Everything runs on this machine; everything is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/testenv-prereqs.sh

DEMO=$(pwd)/.demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
AGENT=$(pwd)/bin/cl-agent
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting the stand-ins (PostgreSQL, moto, IMDS mock, registry)"
go run ./internal/testenv/cmd/standins --env-file "$DEMO/env" --imds2 i-0fedcba9876543210,10.0.2.10,us-east-1b >"$DEMO/standins.log" 2>&1 &
STANDINS=$!
trap 'kill $STANDINS 2>/dev/null; wait $STANDINS 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$DEMO/env" ] && break; kill -0 $STANDINS 2>/dev/null || { cat "$DEMO/standins.log"; exit 1; }; sleep 0.2; done
set -a; . "$DEMO/env"; set +a
sed 's/^PG_PASSWORD=.*/PG_PASSWORD=[REDACTED]/' "$DEMO/env"

step "creating the node's database and secrets (passwords generated here, never printed)"
gen() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24; }
DB_PASSWORD="Db@:/?#%-$(gen)"
PGPASSWORD=$PG_PASSWORD psql -q "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres sslmode=require" \
	-v pw="$DB_PASSWORD" <<'SQL'
CREATE ROLE chainlink LOGIN PASSWORD :'pw';
CREATE DATABASE chainlink OWNER chainlink;
SQL
sm() { aws --endpoint-url "$MOTO_URL" secretsmanager "$@" >/dev/null; }
sm create-secret --name DBSecret --secret-string "$(printf '{"username":"chainlink","password":"%s"}' "$DB_PASSWORD")"
sm create-secret --name ApiSecret --secret-string "Api-$(gen)"
sm create-secret --name WalletSecret --secret-string "Wallet-$(gen)"
echo "secrets DBSecret, ApiSecret, WalletSecret created in moto"

cp "$PG_CAFILE" "$DEMO/db-ca.pem" && chmod 0644 "$DEMO/db-ca.pem"
cat >"$DEMO/config.yaml" <<YAML
aws: {endpoint_url: $MOTO_URL, imds_endpoint: $IMDS_URL}
secrets:
  database_password: {id: DBSecret, json_key: password}
  api_password: {id: ApiSecret}
  keystore_password: {id: WalletSecret}
node:
  format: auto
  network: Ethereum-Sepolia
  ws_url: wss://sepolia.example.invalid/ws
  http_url: https://sepolia.example.invalid
  api_email: ops@example.com
  database: {host: $PG_BRIDGE_HOST, port: $PG_PORT, name: chainlink, user: chainlink, sslmode: verify-full, sslrootcert: $DEMO/db-ca.pem}
image: {repository: $REGISTRY_ADDR/chainlink/chainlink, tag: ""}
container: {data_dir: $DEMO/host1/data, secrets_dir: $DEMO/host1/secrets}
leader: {enabled: false}
control: {socket: $DEMO/host1/control.sock}
state_dir: $DEMO/host1/state
YAML
echo "configuration: $DEMO/config.yaml"

step "pushing the stand-in node image to the local registry as 1.13.0, 2.9.1 and 2.10.0"
go run ./internal/standin/cmd/build-demo-image "$REGISTRY_ADDR/chainlink/chainlink" 1.13.0 2.9.1 2.10.0

step "cl-agent resolve-image (newest stable release, pinned by digest)"
"$AGENT" resolve-image --config "$DEMO/config.yaml" 2>/dev/null

step "cl-agent render --print (what the node gets; secret values masked)"
"$AGENT" render --config "$DEMO/config.yaml" --out "$DEMO/host1/rendered" --print 2>/dev/null
ls -la "$DEMO/host1/rendered"

step "cl-agent check"
"$AGENT" check --config "$DEMO/config.yaml" 2>/dev/null

step "done: stopping the stand-ins"
