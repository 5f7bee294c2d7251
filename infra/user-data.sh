#!/bin/bash
# cl-agent node bootstrap: infra/user-data.sh, embedded verbatim in infra/cdk-template.yaml.
#
# The template puts a short header before this text: the shebang and one NAME='value' line per setting below,
# from the stack's parameters and resources. No password is among them: the agent reads the node's secrets from
# Secrets Manager itself, at run time, with the instance role.
#
# Steps (each one fails the boot with a message naming the step; the stack is told through cfn-signal):
#   1. install Docker and the CloudFormation helper scripts (dnf, Amazon Linux 2023);
#   2. download the cl-agent release archive from S3 and verify its SHA-256 before anything from it is installed;
#   3. install /usr/local/bin/cl-agent and /etc/systemd/system/cl-agent.service from the archive;
#   4. fetch the RDS CA bundle (the agent and the node verify the database certificate against it);
#   5. write /etc/cl-agent/config.yaml;
#   6. start Docker, then enable and start cl-agent and wait for its unit to report ready (systemd's Type=notify:
#      a warm standby, or an active whose node is ready), and signal success. Any failure signals failure, with
#      the unit's result and exit status: the stack never waits in vain.
#
# Outside a stack operation (a host the group replaces later) the same steps run; the signal then goes nowhere.
#
# DESTDIR (unset on EC2) prefixes every path the script writes, so a test can run it in a scratch root.
set -euo pipefail
umask 022

# The CloudFormation helper scripts live in /opt/aws/bin on Amazon Linux; appended, so that a PATH entry placed
# earlier (a test's stubs) wins.
PATH=$PATH:/opt/aws/bin

: "${STACK_NAME:?}" "${REGION:?}" "${SIGNAL_RESOURCE:?}"
: "${AGENT_S3_URI:?}" "${AGENT_SHA256:?}" "${RDS_CA_BUNDLE_URL:?}"
: "${DB_SECRET_ARN:?}" "${API_SECRET_ARN:?}" "${KEYSTORE_SECRET_ARN:?}"
: "${NODE_NETWORK:?}" "${NODE_CHAIN_ID:?}" "${NODE_LINK_CONTRACT?}"
: "${NODE_WS_URL:?}" "${NODE_HTTP_URL?}" "${NODE_API_EMAIL:?}"
: "${DB_HOST:?}" "${DB_PORT:?}" "${DB_NAME:?}" "${DB_USER:?}"
: "${IMAGE_TAG?}" "${IMAGE_MAJOR:?}" "${IMAGE_UPGRADE:?}" "${IMAGE_UPGRADE_WINDOW?}"
: "${NODE_LOG_GROUP:?}" "${HEALTH_LISTEN:?}" "${P2P_ANNOUNCE?}"

DESTDIR=${DESTDIR:-}
START_TIMEOUT=${START_TIMEOUT:-1500}  # seconds to wait for the unit to report ready (the stack waits 30 minutes)
START_POLL=${START_POLL:-5}           # seconds between looks at the unit's state

CONFIG=/etc/cl-agent/config.yaml
RDS_CA=/etc/cl-agent/rds-ca.pem
BIN=/usr/local/bin/cl-agent
UNIT=/etc/systemd/system/cl-agent.service

step=start
failure=""
signalled=false

log() { printf 'cl-agent user-data: %s\n' "$*" >&2; }
fail() {
  failure=$*
  log "FAILED at ${step}: ${failure}"
  exit 1
}

# signal tells CloudFormation how the boot went. It is best effort: outside a stack create or update nothing
# waits for the signal and cfn-signal fails, which must not turn a good boot into a failed one.
signal() {
  local code=$1 reason=$2
  signalled=true
  cfn-signal --exit-code "$code" --reason "$reason" \
    --stack "$STACK_NAME" --resource "$SIGNAL_RESOURCE" --region "$REGION" ||
    log "cfn-signal --exit-code ${code} failed (normal when the stack is not waiting for this instance)"
}

on_exit() {
  local rc=$?
  rm -rf "${work:-}"
  if [ "$rc" -ne 0 ] && [ "$signalled" = false ]; then
    signal 1 "cl-agent user-data failed at ${step}: ${failure:-exit status ${rc}} (more in /var/log/cloud-init-output.log)"
  fi
}
trap on_exit EXIT

# yaml_str prints its argument as a double-quoted YAML scalar.
yaml_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

install_packages() {
  step="install packages"
  local attempt
  for attempt in 1 2 3; do
    if dnf install -y docker aws-cfn-bootstrap tar gzip; then
      return 0
    fi
    log "dnf install failed (attempt ${attempt} of 3)"
    sleep 10
  done
  fail "dnf install -y docker aws-cfn-bootstrap tar gzip did not succeed"
}

# fetch_agent downloads the release archive, verifies it and installs the binary and the unit from it.
fetch_agent() {
  step="download ${AGENT_S3_URI}"
  local archive=$work/cl-agent.tar.gz
  aws s3 cp --only-show-errors --region "$REGION" "$AGENT_S3_URI" "$archive" ||
    fail "could not download ${AGENT_S3_URI}"

  step="verify ${AGENT_S3_URI}"
  local want got
  want=$(printf '%s' "$AGENT_SHA256" | tr 'A-F' 'a-f')
  got=$(sha256sum "$archive" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    fail "checksum mismatch for ${AGENT_S3_URI}: expected sha256 ${want}, got ${got}; nothing was installed"
  fi
  log "sha256 of ${AGENT_S3_URI} verified: ${got}"

  step="unpack ${AGENT_S3_URI}"
  mkdir -p "$work/pkg"
  tar -xzf "$archive" -C "$work/pkg" --no-same-owner cl-agent cl-agent.service ||
    fail "the archive must hold cl-agent and cl-agent.service"

  step="install cl-agent"
  install -d -m 0755 "${DESTDIR}/usr/local/bin" "${DESTDIR}/etc/systemd/system"
  install -m 0755 "$work/pkg/cl-agent" "${DESTDIR}${BIN}.new"
  mv -f "${DESTDIR}${BIN}.new" "${DESTDIR}${BIN}"
  install -m 0644 "$work/pkg/cl-agent.service" "${DESTDIR}${UNIT}"
}

fetch_rds_ca() {
  step="download the RDS CA bundle"
  local pem=$work/rds-ca.pem
  curl -fsS --retry 5 --retry-connrefused --connect-timeout 10 --max-time 120 -o "$pem" "$RDS_CA_BUNDLE_URL" ||
    fail "could not download ${RDS_CA_BUNDLE_URL}"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$pem" ||
    fail "${RDS_CA_BUNDLE_URL} is not a PEM certificate bundle"
  install -d -m 0755 "${DESTDIR}/etc/cl-agent"
  install -m 0644 "$pem" "${DESTDIR}${RDS_CA}"
}

# check_upgrade holds IMAGE_UPGRADE and IMAGE_UPGRADE_WINDOW to cl-agent's rules for image.upgrade and
# image.upgrade_window, so that a boot they would fail names the stack's parameters, rather than the agent exiting 2
# on a configuration the stack wrote.
check_upgrade() {
  case $IMAGE_UPGRADE in
    manual)
      [ -z "$IMAGE_UPGRADE_WINDOW" ] ||
        fail "upgrade window ${IMAGE_UPGRADE_WINDOW} applies only to auto upgrades: set ImageUpgradePolicy to auto, or leave ImageUpgradeWindow empty"
      ;;
    auto)
      [ -z "$IMAGE_TAG" ] ||
        fail "auto upgrades choose the newest stable release, and image tag ${IMAGE_TAG} is pinned: leave ChainlinkVersion empty, or set ImageUpgradePolicy to manual"
      ;;
    *) fail "upgrade policy ${IMAGE_UPGRADE} is not manual or auto" ;;
  esac
  [ -n "$IMAGE_UPGRADE_WINDOW" ] || return 0
  local hhmm='([01][0-9]|2[0-3]):[0-5][0-9]'
  [[ $IMAGE_UPGRADE_WINDOW =~ ^${hhmm}-${hhmm}$ ]] ||
    fail "upgrade window ${IMAGE_UPGRADE_WINDOW} is not HH:MM-HH:MM (UTC, 24-hour)"
  [ "${IMAGE_UPGRADE_WINDOW%-*}" != "${IMAGE_UPGRADE_WINDOW#*-}" ] ||
    fail "upgrade window ${IMAGE_UPGRADE_WINDOW} starts where it ends: an empty window (leave ImageUpgradeWindow empty for any time)"
}

write_config() {
  step="write ${CONFIG}"
  case $DB_PORT in '' | *[!0-9]*) fail "database port ${DB_PORT} is not a number" ;; esac
  case $IMAGE_MAJOR in '' | *[!0-9]*) fail "image major ${IMAGE_MAJOR} is not a number" ;; esac
  case $NODE_CHAIN_ID in '' | *[!0-9]*) fail "chain id ${NODE_CHAIN_ID} is not a number" ;; esac
  # P2P_ANNOUNCE (ip:port of the P2P load balancer, empty without one) turns P2P on, listening on its port.
  local p2p=""
  if [ -n "$P2P_ANNOUNCE" ]; then
    local p2p_port=${P2P_ANNOUNCE##*:}
    case $p2p_port in '' | *[!0-9]*) fail "P2P announce address ${P2P_ANNOUNCE} is not ip:port" ;; esac
    p2p="  p2p: {enabled: true, listen_port: ${p2p_port}, announce: $(yaml_str "$P2P_ANNOUNCE")}"
  fi
  # A pinned tag is the image; the major version only bounds the choice of the newest release.
  local image
  if [ -n "$IMAGE_TAG" ]; then
    image="  tag: $(yaml_str "$IMAGE_TAG")"
  else
    image="  major: ${IMAGE_MAJOR}"
  fi
  check_upgrade
  local upgrade_window=""
  if [ -n "$IMAGE_UPGRADE_WINDOW" ]; then
    upgrade_window="  upgrade_window: $(yaml_str "$IMAGE_UPGRADE_WINDOW")"
  fi
  install -d -m 0755 "${DESTDIR}/etc/cl-agent"
  install -d -m 0700 "${DESTDIR}/var/lib/cl-agent"
  local tmp=${DESTDIR}${CONFIG}.tmp
  (
    umask 027
    cat >"$tmp" <<EOF
# Written at boot by the user-data of CloudFormation stack ${STACK_NAME}. Change the stack's parameters rather
# than this file: a replaced instance gets its configuration from the stack again.
# No secret is kept here: the ids below name Secrets Manager secrets that cl-agent reads at run time.
secrets:
  database_password: {id: $(yaml_str "$DB_SECRET_ARN"), json_key: password}
  api_password: {id: $(yaml_str "$API_SECRET_ARN")}
  keystore_password: {id: $(yaml_str "$KEYSTORE_SECRET_ARN")}
node:
  network: $(yaml_str "$NODE_NETWORK")
  chain_id: ${NODE_CHAIN_ID}
  link_contract: $(yaml_str "$NODE_LINK_CONTRACT")
  ws_url: $(yaml_str "$NODE_WS_URL")
  http_url: $(yaml_str "$NODE_HTTP_URL")
  api_email: $(yaml_str "$NODE_API_EMAIL")
${p2p}
  database:
    host: $(yaml_str "$DB_HOST")
    port: ${DB_PORT}
    name: $(yaml_str "$DB_NAME")
    user: $(yaml_str "$DB_USER")
    sslmode: verify-full
    sslrootcert: ${RDS_CA}
image:
${image}
  upgrade: ${IMAGE_UPGRADE}
${upgrade_window}
container:
  log:
    driver: awslogs
    group: $(yaml_str "$NODE_LOG_GROUP")
health:
  listen: $(yaml_str "$HEALTH_LISTEN")
EOF
  )
  mv -f "$tmp" "${DESTDIR}${CONFIG}"
}

# start_agent enables and starts cl-agent and waits for the unit itself, not for a preflight run outside its sandbox:
# the unit is Type=notify, so it turns active only when the agent says READY=1 (a warm standby, or an active whose
# node is ready). While it is activating (starting, or restarting after a retryable exit 1: the database not
# reachable yet) the wait goes on; the unit failing (exit 2: bad configuration, 5: terminal, or too many restarts)
# fails the boot at once, naming the result and the exit status.
start_agent() {
  step="start cl-agent"
  systemctl enable --now --no-block cl-agent.service
  local waited=0 state
  while :; do
    state=$(systemctl show -p ActiveState --value cl-agent.service)
    case "$state" in
      active) return 0 ;;
      failed)
        fail "cl-agent failed: result $(systemctl show -p Result --value cl-agent.service), exit status $(systemctl show -p ExecMainStatus --value cl-agent.service) (journalctl -u cl-agent says why)"
        ;;
    esac
    if [ "$waited" -ge "$START_TIMEOUT" ]; then
      fail "cl-agent not ready after ${waited}s (state ${state}; journalctl -u cl-agent says why)"
    fi
    sleep "$START_POLL"
    waited=$((waited + START_POLL))
  done
}

main() {
  work=$(mktemp -d)
  install_packages
  fetch_agent
  fetch_rds_ca
  write_config

  step="start docker"
  systemctl daemon-reload
  systemctl enable --now docker.service

  start_agent

  step="done"
  log "cl-agent installed, started and ready"
  signal 0 "cl-agent ready: $(systemctl show -p StatusText --value cl-agent.service)"
}

main "$@"
