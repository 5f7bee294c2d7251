#!/usr/bin/env bash
# make demo: two cl-agents as two "hosts" (two instance identities from the IMDS mock, two container names and
# ports) against one PostgreSQL, with the node's secrets in moto's Secrets Manager and the stand-in Chainlink node
# image in a local registry. It shows: the files the node gets (secrets masked), the preflight checks, both agents'
# status, the active node answering, then kill -9 of the active agent, its fence (what systemd's ExecStopPost
# does), and the standby taking over. Everything runs on this machine and is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/testenv-prereqs.sh

DEMO=$(pwd)/.demo
AGENT=$(pwd)/bin/cl-agent
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for h in host1 host2; do
		[ -f "$DEMO/$h/config.yaml" ] && "$AGENT" fence --config "$DEMO/$h/config.yaml" >/dev/null 2>&1
		mountpoint -q "$DEMO/$h/secrets" && umount "$DEMO/$h/secrets"
	done
}
trap cleanup EXIT
for h in host1 host2; do mountpoint -q "$DEMO/$h/secrets" 2>/dev/null && umount "$DEMO/$h/secrets"; done
rm -rf "$DEMO" && mkdir -p "$DEMO"

step "starting the stand-ins: PostgreSQL 15, moto, two IMDS identities, a registry"
go build -o "$DEMO/standins" ./internal/testenv/cmd/standins
"$DEMO/standins" --env-file "$DEMO/env" --imds2 i-0fedcba9876543210,10.0.2.10,us-east-1b >"$DEMO/standins.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -s "$DEMO/env" ] && break; kill -0 "${pids[0]}" 2>/dev/null || { cat "$DEMO/standins.log"; exit 1; }; sleep 0.1; done
set -a; . "$DEMO/env"; set +a
sed 's/^PG_PASSWORD=.*/PG_PASSWORD=[REDACTED]/' "$DEMO/env"

CHAIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
go build -o "$DEMO/chainsim" ./internal/chainsim/cmd/chainsim
"$DEMO/chainsim" -listen "127.0.0.1:$CHAIN_PORT" -chain-id 11155111 -block-time 2s >"$DEMO/chainsim.log" 2>&1 &
pids+=($!)
echo "chain client stand-in (JSON-RPC over HTTP and WebSocket): 127.0.0.1:$CHAIN_PORT"

step "the node's database and secrets (generated here, never printed)"
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
unset DB_PASSWORD
echo "database chainlink (password with @:/?#%), secrets DBSecret, ApiSecret, WalletSecret"

step "the stand-in Chainlink image in the local registry as 1.13.0, 2.9.1 and 2.10.0"
go run ./internal/standin/cmd/build-demo-image "$REGISTRY_ADDR/chainlink/chainlink" 1.13.0 2.9.1 2.10.0

cp "$PG_CAFILE" "$DEMO/db-ca.pem" && chmod 0644 "$DEMO/db-ca.pem"
write_config() { # host imds_url port
	mkdir -p "$DEMO/$1/secrets"
	mount -t tmpfs -o size=1m,mode=0700 tmpfs "$DEMO/$1/secrets"
	cat >"$DEMO/$1/config.yaml" <<YAML
aws: {endpoint_url: $MOTO_URL, imds_endpoint: $2}
secrets:
  database_password: {id: DBSecret, json_key: password}
  api_password: {id: ApiSecret}
  keystore_password: {id: WalletSecret}
node:
  network: Ethereum-Sepolia
  ws_url: ws://127.0.0.1:$CHAIN_PORT
  http_url: http://127.0.0.1:$CHAIN_PORT
  api_email: ops@example.com
  database: {host: $PG_BRIDGE_HOST, port: $PG_PORT, name: chainlink, user: chainlink, sslmode: verify-full, sslrootcert: $DEMO/db-ca.pem}
image: {repository: $REGISTRY_ADDR/chainlink/chainlink}
container:
  name: chainlink-$1
  host_port: $3
  data_dir: $DEMO/$1/data
  secrets_dir: $DEMO/$1/secrets
  log: {driver: json-file, group: ChainlinkLogs}
leader: {enabled: true}
health: {listen: "127.0.0.1:$(($3 + 1000))"}
control: {socket: $DEMO/$1/control.sock}
state_dir: $DEMO/$1/state
YAML
}
write_config host1 "$IMDS_URL" 16688
write_config host2 "$IMDS2_URL" 26688

step "cl-agent resolve-image: the newest stable release, pinned by digest"
"$AGENT" resolve-image --config "$DEMO/host1/config.yaml" 2>/dev/null

step "cl-agent render --print: what the node gets (secret values masked)"
"$AGENT" render --config "$DEMO/host1/config.yaml" --out "$DEMO/rendered" --print 2>/dev/null
rm -rf "$DEMO/rendered"

step "cl-agent check (host1)"
"$AGENT" check --config "$DEMO/host1/config.yaml" 2>/dev/null

step "starting both agents"
start_agent() { "$AGENT" run --config "$DEMO/$1/config.yaml" >"$DEMO/$1/agent.log" 2>&1 & echo $!; }
declare -A agent_pid
agent_pid[host1]=$(start_agent host1); pids+=("${agent_pid[host1]}")
agent_pid[host2]=$(start_agent host2); pids+=("${agent_pid[host2]}")
role() { "$AGENT" status --json --config "$DEMO/$1/config.yaml" 2>/dev/null | sed -n 's/^  "role": "\(.*\)",$/\1/p'; }
ready() { "$AGENT" status --json --config "$DEMO/$1/config.yaml" 2>/dev/null | grep -q '"ready": true'; }
active=""
for _ in $(seq 600); do
	for h in host1 host2; do [ "$(role $h)" = active ] && ready $h && active=$h; done
	[ -n "$active" ] && break; sleep 0.1
done
[ -n "$active" ] || { echo "no agent became active"; tail -20 "$DEMO"/host*/agent.log; exit 1; }
standby=host1; [ "$active" = host1 ] && standby=host2
for h in host1 host2; do echo "--- cl-agent status ($h)"; "$AGENT" status --config "$DEMO/$h/config.yaml"; done

port() { sed -n 's/^  host_port: //p' "$DEMO/$1/config.yaml"; }
health() { sed -n 's/^health: {listen: "\(.*\)"}$/\1/p' "$DEMO/$1/config.yaml"; }
step "the load balancer's view: each agent's /readyz (only the active answers 200)"
for h in host1 host2; do
	printf '%s (%s): ' "$h" "$(role $h)"; curl -s -w ' [%{http_code}]\n' "http://$(health $h)/readyz"
done
step "the active node answers: GET http://127.0.0.1:$(port "$active")/readyz"
curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$(port "$active")/readyz"
echo "secrets directory of the active after the node became ready: $(ls -A "$DEMO/$active/secrets" | wc -l) files"

step "kill -9 of the active agent ($active), then its fence as systemd's ExecStopPost would run it"
t0=$(date +%s.%N)
kill -9 "${agent_pid[$active]}"
"$AGENT" fence --config "$DEMO/$active/config.yaml" 2>/dev/null
for _ in $(seq 600); do [ "$(role $standby)" = active ] && ready $standby && break; sleep 0.05; done
t1=$(date +%s.%N)
printf 'the standby (%s) has a ready node %.2f s after the kill\n' "$standby" "$(echo "$t1 - $t0" | bc)"
"$AGENT" status --config "$DEMO/$standby/config.yaml"
curl -s -o /dev/null -w "GET http://127.0.0.1:$(port "$standby")/readyz: %{http_code}\n" "http://127.0.0.1:$(port "$standby")/readyz"
printf 'agent /readyz of %s: ' "$standby"; curl -s -w ' [%{http_code}]\n' "http://$(health "$standby")/readyz"
echo "a few of its metrics:"
curl -s "http://$(health "$standby")/metrics" | grep -E '^cl_agent_(role|lock_held|failovers_total|node_ready|image_info)' | head -8

step "done: stopping everything"
