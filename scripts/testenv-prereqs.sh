#!/usr/bin/env bash
# testenv-prereqs.sh: check (and where apt can, install) what cl-agent's integration tests and `make demo` need on a
# fresh Debian machine of this kind: PostgreSQL 15 server binaries and the postgres user, a running docker engine,
# iproute2 and iptables (network-namespace tests), moto_server and cfn-lint (Python, not installable here), and Go.
# Idempotent; fast (well under 2 s) when everything is present. Exits 1 naming whatever is still missing.
set -uo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
DOCKER_LOG=${TMPDIR:-/tmp}/cl-agent-testenv-dockerd.log
DOCKER_WAIT=60   # seconds for a freshly started dockerd to answer

missing=()
apt_pkgs=()
updated=

say() { printf 'testenv-prereqs: %s\n' "$*" >&2; }

apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		say "apt-get not available: cannot install $*"
		return 1
	fi
	if [ -z "$updated" ]; then
		say "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
		updated=1
	fi
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Packages apt can provide: collect first, install in one go.
[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] || apt_pkgs+=(postgresql-15)
command -v ip >/dev/null 2>&1 || apt_pkgs+=(iproute2)
command -v iptables >/dev/null 2>&1 || apt_pkgs+=(iptables)
command -v dockerd >/dev/null 2>&1 || apt_pkgs+=(docker.io)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
	apt_install "${apt_pkgs[@]}" || say "installing ${apt_pkgs[*]} failed"
fi
[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] || missing+=("PostgreSQL 15 server binaries in $PG_BIN (apt: postgresql-15)")
command -v ip >/dev/null 2>&1 || missing+=("ip (apt: iproute2)")
command -v iptables >/dev/null 2>&1 || missing+=("iptables (apt: iptables)")

# 2. The postgres user: initdb refuses to run as root. The postgresql-15 package creates it.
if ! id -u postgres >/dev/null 2>&1; then
	say "creating system user postgres"
	useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres ||
		missing+=("the postgres user (useradd failed)")
fi

# 3. A running docker engine (API 1.41 or later).
docker_ping() {
	if command -v docker >/dev/null 2>&1; then
		timeout 5 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1
	elif command -v curl >/dev/null 2>&1; then
		timeout 5 curl -fsS --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1
	else
		return 1
	fi
}
if ! docker_ping; then
	if command -v dockerd >/dev/null 2>&1; then
		say "docker engine not answering: starting dockerd (log: $DOCKER_LOG)"
		setsid dockerd >>"$DOCKER_LOG" 2>&1 </dev/null &
		for _ in $(seq $((DOCKER_WAIT * 5))); do
			docker_ping && break
			sleep 0.2
		done
	fi
	docker_ping || missing+=("a running docker engine (dockerd did not answer within ${DOCKER_WAIT}s; see $DOCKER_LOG)")
fi
command -v docker >/dev/null 2>&1 || missing+=("the docker CLI (tests build images with it)")

# 4. Not installable here (no Python package index): must come with the image.
command -v moto_server >/dev/null 2>&1 || missing+=("moto_server (moto 5.2.1, pip install 'moto[server]==5.2.1'; no package index here: use the prepared image)")
command -v cfn-lint >/dev/null 2>&1 || missing+=("cfn-lint (1.51.0, pip install cfn-lint==1.51.0; no package index here: use the prepared image)")
command -v go >/dev/null 2>&1 || missing+=("go (1.26, from go.dev/dl; not in apt here)")

if [ ${#missing[@]} -gt 0 ]; then
	say "missing:"
	for m in "${missing[@]}"; do printf '  - %s\n' "$m" >&2; done
	exit 1
fi
say "ok"
