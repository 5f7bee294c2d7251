#!/usr/bin/env bash
# build.sh: geth (go-ethereum), the real chain client of the tests, built from its Go module with cgo. Cached by
# content: the binary lives in a directory named after the version and a hash of this script and of the Go
# toolchain, so a second run returns at once; a build happens only when one of those changes.
# Prints the path of the geth executable on stdout; progress goes to stderr. Concurrent runs wait for one another.
set -euo pipefail

version=v1.17.10
module=github.com/ethereum/go-ethereum/cmd/geth

here=$(cd "$(dirname "$0")" && pwd)
cache=${CL_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cl-agent}
key=$( (cat "$here/build.sh"; go version; go env GOOS GOARCH CC) | sha256sum | cut -c1-12)
dir=$cache/geth-$version-$key
bin=$dir/geth

say() { printf 'geth %s: %s\n' "$version" "$*" >&2; }

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/geth-$version.lock"
flock 9 # another run may be building the same thing: wait for it, then use its result
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

work=$(mktemp -d "$cache/.geth-$version.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
say "go install $module@$version (cgo; a few minutes on a cold cache)"
# GOFLAGS from the environment (e.g. -mod=vendor of a caller) must not reach a module outside this repository.
if ! GOFLAGS=-buildvcs=false CGO_ENABLED=1 GOBIN="$work" go install "$module@$version" >"$work/build.log" 2>&1; then
	tail -n 30 "$work/build.log" >&2
	exit 1
fi
"$work/geth" version >/dev/null
mkdir -p "$dir"
mv "$work/geth" "$bin.tmp" && mv "$bin.tmp" "$bin" # rename last: a present $bin is always complete
say "built $bin in $(($(date +%s) - start)) s"
echo "$bin"
