#!/usr/bin/env bash
# build.sh: the system-test host image: Debian bookworm with systemd 252 as PID 1 and its own dockerd, made from
# Debian packages with debootstrap (no registry needed). Cached by content: the image carries a label with the hash
# of this script, and a second run with an unchanged script returns in well under a second.
# Containers of it need `--stop-signal SIGRTMIN+3` (docker import cannot set it). Prints the image reference on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=cl-agent-test/systemd-host
packages=systemd,systemd-sysv,dbus,ca-certificates,curl,iproute2,procps,docker.io,iptables,psmisc
key=$(cd "$here" && find build.sh rootfs ../lib.sh -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
ref=$repo:$key

say() { printf 'systemd-host image: %s\n' "$*" >&2; }

# shellcheck source=../lib.sh
. "$here/../lib.sh"
exit_if_cached "$ref" "$key"

work=$(mktemp -d /var/tmp/cl-agent-systemd-host.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
start=$(date +%s)
debootstrap_root "$root" "$packages"

# What a fresh EC2 host of the template has and what the rig needs: the node's uid, no services that would compete
# with the test (no getty, no timers), and the inner dockerd's own settings.
cp -a "$here"/rootfs/. "$root"/
chroot "$root" /bin/sh -euc '
	systemctl mask getty@tty1.service console-getty.service systemd-logind.service apt-daily.timer \
		apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer >/dev/null 2>&1 || true
	systemctl enable docker.service >/dev/null 2>&1
	echo cl-agent-host > /etc/hostname
'
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

say "docker import"
tar -C "$root" -c . | docker import \
	-c 'ENV container=docker' \
	-c 'CMD ["/sbin/init"]' \
	-c "LABEL cl-agent.build-key=$key" \
	- "$ref" >/dev/null
say "built $ref in $(($(date +%s) - start)) s"
echo "$ref"
