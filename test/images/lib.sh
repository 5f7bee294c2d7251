# lib.sh: what the test images' build scripts share; sourced, not run. The caller defines say() (progress on
# stderr). Every script that sources it hashes it into its cache key, so a change here rebuilds their images.

# exit_if_cached REF KEY: print REF and end the script when the image REF already carries build key KEY.
exit_if_cached() {
	if [ "$(docker image inspect -f '{{index .Config.Labels "cl-agent.build-key"}}' "$1" 2>/dev/null)" = "$2" ]; then
		echo "$1"
		exit 0
	fi
}

# apt_install PACKAGES...: apt-get install, one at a time on this machine. `make images` runs the builds side by
# side, and on a fresh machine more than one of them installs packages: apt's own locks fail at once instead of
# waiting, so the installs queue on a lock of ours (and wait for an apt run of the system's, within its timeout).
apt_install() {
	(
		flock -w 900 9 || {
			echo "apt_install: another install held the lock for 900 s" >&2
			exit 1
		}
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq update &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq install -y --no-install-recommends "$@" >/dev/null
	) 9>/var/lock/cl-agent-apt.lock
}

# debootstrap_root ROOT PACKAGES [MIRROR]: a Debian bookworm minbase root in ROOT with PACKAGES (comma-separated),
# from Debian's packages (no registry). Installs debootstrap with apt-get when it is missing; on failure prints
# the tail of debootstrap's log and fails.
debootstrap_root() {
	local root=$1 packages=$2 mirror=${3:-${DEBIAN_MIRROR:-http://deb.debian.org/debian}}
	command -v debootstrap >/dev/null 2>&1 || {
		say "installing debootstrap"
		apt_install debootstrap
	}
	say "debootstrap bookworm into $root (packages: $packages)"
	debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
		tail -n 30 "$root.debootstrap.log" >&2
		return 1
	}
}
