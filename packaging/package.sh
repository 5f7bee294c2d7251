#!/usr/bin/env bash
# packaging/package.sh (what `make package` runs): build the cl-agent release for the node hosts.
#
# Writes to $DIST (default dist/):
#   cl-agent                                 static linux binary (CGO_ENABLED=0, -trimpath, main.version set)
#   cl-agent.service                         the systemd unit, from packaging/systemd/
#   cl-agent_<version>_linux_<arch>.tar.gz   both of the above: the archive the stack's user-data installs
#   SHA256SUMS                               sha256sum of the three files above
#
# Upload the archive to S3 and give the stack its location and SHA-256 (parameters AgentS3Bucket, AgentS3Key,
# AgentSHA256); the user-data installs nothing from an archive with another checksum.
#
# Environment: VERSION (default: git describe, else "dev"), DIST (default dist), GOARCH (default amd64: the hosts
# and the Chainlink images are x86_64), SOURCE_DATE_EPOCH (timestamps in the archive; default 0), GO (default go).
# The archive is reproducible: same sources, same VERSION, same bytes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
DIST=${DIST:-dist}
GOARCH=${GOARCH:-amd64}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
VERSION=${VERSION#v}

die() {
  printf 'package.sh: %s\n' "$*" >&2
  exit 1
}

# The version lands in -ldflags and in a file name.
case $VERSION in
  '' | *[!A-Za-z0-9._+-]*) die "VERSION \"${VERSION}\" may only hold letters, digits and . _ + -" ;;
esac
unit=packaging/systemd/cl-agent.service
[ -f "$unit" ] || die "${unit} is missing"

archive=cl-agent_${VERSION}_linux_${GOARCH}.tar.gz
mkdir -p "$DIST"
rm -f "$DIST/cl-agent" "$DIST/cl-agent.service" "$DIST/$archive" "$DIST/SHA256SUMS"

CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH "$GO" build -trimpath \
  -ldflags "-s -w -X main.version=${VERSION}" \
  -o "$DIST/cl-agent" ./cmd/cl-agent
install -m 0644 "$unit" "$DIST/cl-agent.service"
chmod 0755 "$DIST/cl-agent"

# Fixed order, owner and time, and gzip without a name or time stamp: a reproducible archive.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@${SOURCE_DATE_EPOCH}" \
  -C "$DIST" -cf - cl-agent cl-agent.service | gzip -n -9 >"$DIST/$archive"

(cd "$DIST" && sha256sum cl-agent cl-agent.service "$archive" >SHA256SUMS)

sum=$(cd "$DIST" && sha256sum "$archive" | cut -d' ' -f1)
cat <<EOF
cl-agent ${VERSION} (linux/${GOARCH}) packaged in ${DIST}/:
$(cd "$DIST" && sed 's/^/  /' SHA256SUMS)

Upload the archive and give the stack its location and checksum:
  aws s3 cp ${DIST}/${archive} s3://BUCKET/cl-agent/${archive}
  AgentS3Bucket=BUCKET AgentS3Key=cl-agent/${archive} AgentSHA256=${sum}
EOF
