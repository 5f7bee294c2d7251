# lib.sh: what the test images' build scripts share; sourced, not run. The caller defines say() (progress on
# stderr). Every script that sources it hashes it into its cache key, so a change here rebuilds their images.

# exit_if_cached REF KEY: print REF and end the script when the image REF already carries build key KEY.
exit_if_cached() {
	if [ "$(docker image inspect -f '{{index .Config.Labels "cl-agent.build-key"}}' "$1" 2>/dev/null)" = "$2" ]; then
		echo "$1"
		exit 0
	fi
}

# debootstrap_root ROOT PACKAGES [MIRROR]: a Debian bookworm minbase root in ROOT with PACKAGES (comma-separated),
# from Debian's packages (no registry). Installs debootstrap with apt-get when it is missing; on failure prints
# the tail of debootstrap's log and fails.
debootstrap_root() {
	local root=$1 packages=$2 mirror=${3:-${DEBIAN_MIRROR:-http://deb.debian.org/debian}}
	command -v debootstrap >/dev/null 2>&1 || {
		say "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	}
	say "debootstrap bookworm into $root (packages: $packages)"
	debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
		tail -n 30 "$root.debootstrap.log" >&2
		return 1
	}
}
