// Package image decides which Chainlink node image runs: a pinned tag, or the newest stable release, always
// pinned to its digest (Resolve). It owns the talk to the image's source, the semver choice and the file that
// keeps the last good choice; pulling the image onto the host is the container package's (EnsureImage).
//
// Sources: Docker Hub repositories are read through the Hub API (tag records carry digest and platforms, and
// reading them counts no pull); other registries through /v2 (tags/list, a manifest HEAD for the digest, an
// anonymous Bearer token when challenged). "Newest" means the highest strictly X.Y.Z tag by semver, optionally
// within one major, that has an image for the host's platform: push order, suffixed tags (-root, -rc.1, -ccip…),
// latest, sha-… and branch names never win.
//
// Requests: every request has a timeout and ctx bounds the whole resolution; connection errors, timeouts, 429 and
// 5xx are retried a bounded number of times honouring Retry-After; other 4xx are not. Redirects are followed only
// on the same host. Failures are *HTTPError, which never carries credentials.
//
// Failure: the last good choice is kept in StateDir/image.json. When the source cannot be reached
// (ErrUnreachable) and that choice was made for the same repository and settings, it is returned with FromCache
// set and a warning; otherwise the resolution fails. Wrong answers (ErrTagNotFound for a missing pinned tag,
// ErrNoRelease, ErrNoPlatform) never fall back.
package image
