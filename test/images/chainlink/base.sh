#!/usr/bin/env bash
# base.sh: the root of the real Chainlink node image (build.sh puts the node on top): Debian bookworm made with
# debootstrap --variant=minbase from Debian packages (no registry), with ca-certificates, curl (a health check in a
# container) and the node's user and group chainlink 14933:14933, home /home/chainlink, as the published images
# have them. Cached by content: the image is tagged with a hash of this script and carries it as a label, so every
# node version shares one base and a second run returns at once. Prints the image reference on stdout; progress
# goes to stderr. Run as root (debootstrap, chroot); installs debootstrap with apt-get when it is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=cl-agent-test/chainlink-base
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=ca-certificates,curl,passwd
key=$(sha256sum "$here/base.sh" | cut -c1-16)
ref=$repo:$key

say() { printf 'chainlink base image: %s\n' "$*" >&2; }

if [ "$(docker image inspect -f '{{index .Config.Labels "cl-agent.build-key"}}' "$ref" 2>/dev/null)" = "$key" ]; then
	echo "$ref"
	exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
	say "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

work=$(mktemp -d /var/tmp/cl-agent-chainlink-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
start=$(date +%s)
say "debootstrap bookworm into $root (packages: $packages)"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	exit 1
}
chroot "$root" /bin/sh -euc '
	groupadd --gid 14933 chainlink
	useradd --uid 14933 --gid 14933 --create-home --home-dir /home/chainlink --shell /bin/sh chainlink
'
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

say "docker import"
tar -C "$root" -c . | docker import \
	-c "LABEL cl-agent.build-key=$key" \
	-c 'USER chainlink' \
	-c 'WORKDIR /home/chainlink' \
	- "$ref" >/dev/null
say "built $ref in $(($(date +%s) - start)) s"
echo "$ref"
