// Package container owns the Chainlink node's container on this host.
//
// Image resolution (ResolveImage) decides what runs: a pinned tag, or the newest stable release, always
// pinned to its digest. Docker Hub repositories are read through the Hub API (tag records carry digest and
// platforms, and reading them counts no pull); other registries through /v2 (tags/list, a manifest HEAD for
// the digest, an anonymous Bearer token when challenged). "Newest" means the highest strictly X.Y.Z tag by
// semver, optionally within one major, that has an image for the host's platform: push order, suffixed
// tags (-root, -rc.1, -ccip…), latest, sha-… and branch names never win. Every request has a timeout;
// connection errors, timeouts, 429 and 5xx are retried a bounded number of times honouring Retry-After;
// other 4xx are not.
//
// The last good choice is kept in StateDir/image.json. When the source cannot be reached (ErrUnreachable)
// and that choice was made for the same repository and settings, it is used with a warning; otherwise the
// resolution fails. Wrong answers (a missing pinned tag, no release for this platform) never fall back.
package container
