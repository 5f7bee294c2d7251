#!/usr/bin/env bash
# build.sh [VERSION]: the REAL Chainlink node as a Docker image, built here from its Go module
# (github.com/smartcontractkit/chainlink/v2 at exactly vVERSION; default 2.19.0), for the integration tests that run
# the node itself. No registry is involved: the module comes from the Go module proxy, the root from Debian
# (base.sh), and the image is assembled locally.
#
#   - The node is built in a copy of wrapper/, a module of its own that requires chainlink/v2 and repeats the replace
#     (and exclude) directives of chainlink's own go.mod, which a dependent module does not inherit. For the pinned
#     version the committed wrapper/go.mod and go.sum are used as they are (every module checked against go.sum);
#     for any other version go.mod is written from chainlink's go.mod of that version.
#   - `CGO_ENABLED=1 go build -mod=mod` with core/static.Version and core/static.Sha set as the release does; the
#     shared libraries the binary needs from the module cache (libwasmvm) go to /usr/lib.
#   - The image: base.sh's root, the binary at /usr/local/bin/chainlink, ENTRYPOINT ["chainlink"], USER chainlink
#     (14933:14933), WORKDIR /home/chainlink, EXPOSE 6688: the contract of the published images.
#
# Cached by content: the image cl-agent-test/chainlink:VERSION carries the label cl-agent.build-key, a hash of the
# version, its commit, these scripts, the wrapper files and the Go toolchain. When the tagged image has that key the
# script prints it and exits (well under a second); otherwise it builds (cold: a ~5 GB module download and a
# compile of several minutes on 2 cores). Concurrent runs wait for one another. Prints the image reference on
# stdout; progress goes to stderr. Needs root, a running Docker engine and Go; installs gcc when it is missing.
set -euo pipefail

module=github.com/smartcontractkit/chainlink/v2
pinned_version=2.19.0
pinned_commit=d7b5f7bd0d0db82550e39223aeeb5a5eafe01e24

version=${1:-$pinned_version}
version=${version#v}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
	echo "usage: build.sh [VERSION]  (X.Y.Z, e.g. $pinned_version)" >&2
	exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
repo=cl-agent-test/chainlink
ref=$repo:$version
cache=${CL_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cl-agent}

# Nothing of a caller's Go settings (e.g. -mod=vendor) may reach a module outside this repository. The checksum
# database does not know the chainlink modules (the proxy's sumdb answers 404 for them): they are checked against
# the committed go.sum for the pinned version, and taken from the module proxy as served for any other.
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GONOSUMDB=github.com/smartcontractkit GOWORK=off

say() { printf 'chainlink %s: %s\n' "$version" "$*" >&2; }
# shellcheck source=../lib.sh
. "$here/../lib.sh"

files_hash() {
	(cd "$here" && find build.sh base.sh ../lib.sh wrapper -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-64
}

# commit_of prints the git commit of the version (the module proxy's Origin record; fetched once, then cached).
commit_of() {
	if [ "$version" = "$pinned_version" ]; then
		echo "$pinned_commit"
		return
	fi
	(cd / && go list -m -json "$module@v$version") | sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]\{40\}\)".*/\1/p'
}

build_key() { # version, commit, the recipe's files and the toolchain
	printf '%s\n' "$version" "$1" "$(files_hash)" "$(go version)" "$(go env GOARCH CC)" | sha256sum | cut -c1-16
}

cached() { [ "$(docker image inspect -f '{{index .Config.Labels "cl-agent.build-key"}}' "$ref" 2>/dev/null)" = "$1" ]; }

commit=$(commit_of)
[ -n "$commit" ] || {
	say "the module proxy has no version v$version of $module"
	exit 1
}
key=$(build_key "$commit")
if cached "$key"; then
	echo "$ref"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/chainlink-image.lock"
flock 9 # another run may be building: wait for it, then use its result
if cached "$key"; then
	echo "$ref"
	exit 0
fi

command -v gcc >/dev/null 2>&1 || {
	say "installing gcc (the node is built with cgo)"
	apt_install gcc libc6-dev
}

start=$(date +%s)
base=$(bash "$here/base.sh")

work=$(mktemp -d /var/tmp/cl-agent-chainlink.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/wrapper" "$work/image"

# upstream_directives prints the replace and exclude directives of chainlink's own go.mod, one per line, comments
# dropped; a replacement by a local directory (which only exists in chainlink's repository) is left out.
upstream_directives() {
	awk '
		{ sub(/\/\/.*/, "") }
		NF == 0 { next }
		blk != "" && $1 == ")" { blk = ""; next }
		($1 == "replace" || $1 == "exclude") && $2 == "(" { blk = $1; next }
		$1 == "replace" || $1 == "exclude" { print; next }
		blk != "" { $1 = $1; print blk " " $0 }
	' "$1" | awk '!($1 == "replace" && $NF ~ /^[.\/]/)'
}

if [ "$version" = "$pinned_version" ]; then
	cp "$here/wrapper/go.mod" "$here/wrapper/go.sum" "$work/wrapper/"
else
	gomod=$( (cd / && go list -m -json "$module@v$version") | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	{
		echo "module github.com/cl-agent/cl-agent/test/images/chainlink/wrapper"
		echo
		echo "go $(go env GOVERSION | sed 's/^go//')"
		echo
		echo "require $module v$version"
		echo
		upstream_directives "$gomod"
	} >"$work/wrapper/go.mod"
	say "wrapper go.mod for v$version (directives from chainlink's go.mod):"
	sed -n '/^\(replace\|exclude\)/s/^/  /p' "$work/wrapper/go.mod" >&2
fi

say "go build $module@v$version (commit $commit; cgo; cold: a ~5 GB module download and several minutes)"
bin=$work/image/chainlink
ldflags="-X $module/core/static.Version=$version -X $module/core/static.Sha=$commit"
if ! (cd "$work/wrapper" && CGO_ENABLED=1 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$bin" "$module") \
	>"$work/build.log" 2>&1; then
	refused=$(grep -o 'reading https://[^ ]*/@v/[^ ]*\.zip: 403' "$work/build.log" | sed 's|^reading https://[^/]*/||; s|/@v/|@|; s|\.zip: 403$||' | LC_ALL=C sort -u)
	if [ -n "$refused" ]; then # newer releases pin dependency versions that the module proxy does not serve
		say "cannot build: the module proxy refuses (403) these dependencies of v$version:"
		sed 's/^/  /' <<<"$refused" >&2
	else
		tail -n 40 "$work/build.log" >&2
	fi
	exit 1
fi
say "compiled in $(($(date +%s) - start)) s"

# The shared libraries the binary needs beyond the base's glibc come from the modules it was built from (cgo
# links libwasmvm with an rpath into the module cache, which does not exist in the image).
modcache=$(go env GOMODCACHE)
mapfile -t libs < <(ldd "$bin" | awk -v mc="$modcache/" '$2 == "=>" && ($3 == "not" || index($3, mc) == 1) { print $1 "=" $3 }')
: >"$work/image/libs"
for entry in "${libs[@]}"; do
	lib=${entry%%=*} found=${entry#*=}
	if [ "$found" = not ]; then
		moddirs=$(cd "$work/wrapper" && go list -mod=mod -deps -f '{{with .Module}}{{.Dir}}{{end}}' "$module" | LC_ALL=C sort -u)
		found=$(find $moddirs -name "$lib" -type f 2>/dev/null | head -n 1)
		[ -n "$found" ] || {
			say "the binary needs $lib, found neither on this host nor in its modules"
			exit 1
		}
	fi
	say "bundling $lib from ${found#"$modcache"/}"
	cp "$found" "$work/image/$lib"
	echo "COPY $lib /usr/lib/$lib" >>"$work/image/libs"
done

cat >"$work/image/Dockerfile" <<EOF
FROM $base
USER root
$(cat "$work/image/libs")
COPY chainlink /usr/local/bin/chainlink
RUN ["/sbin/ldconfig"]
USER chainlink
WORKDIR /home/chainlink
EXPOSE 6688
ENTRYPOINT ["chainlink"]
LABEL cl-agent.build-key=$key org.opencontainers.image.version=$version org.opencontainers.image.revision=$commit
EOF
rm -f "$work/image/libs"
say "docker build $ref"
if ! docker build -q -t "$ref" "$work/image" >"$work/docker.log" 2>&1; then
	cat "$work/docker.log" >&2
	exit 1
fi
if ! out=$(docker run --rm "$ref" --version 2>&1); then
	say "the image does not run: $out"
	exit 1
fi
say "built $ref ($out) in $(($(date +%s) - start)) s"
echo "$ref"
