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
packages=ca-certificates,curl,passwd
key=$(cat "$here/base.sh" "$here/../lib.sh" | sha256sum | cut -c1-16)
ref=$repo:$key

say() { printf 'chainlink base image: %s\n' "$*" >&2; }

# shellcheck source=../lib.sh
. "$here/../lib.sh"
exit_if_cached "$ref" "$key"

work=$(mktemp -d /var/tmp/cl-agent-chainlink-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
start=$(date +%s)
debootstrap_root "$root" "$packages"
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
