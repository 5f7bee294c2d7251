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

// Supervision (Supervisor) keeps the node's container up: render the node's files → adopt a matching container
// left by an earlier run of the agent or replace one that differs (config hash, image) → pull by digest →
// BeforeStart (the leader's takeover guard) → write the files → create and start → wait until /readyz answers
// 200 (only 200: /health's 207 is a sick node) → shred the files. When the node exits or never gets ready: shred,
// back off (exponential with jitter, reset after a stable period), and start again with freshly written files;
// the restart policy is "no" because only the agent can write them. It reacts to the container's Docker events
// at once, reconciles on a timer, and resubscribes when the event stream breaks (a dockerd restart). Run stops
// the node (SIGTERM, SIGKILL after container.stop_timeout) and removes it on every way out.
//
// Fence does the same stop without a running agent (systemd's ExecStopPost). Only containers that carry the
// cl-agent.managed label are ever stopped or replaced: a same-named container the agent did not create is left
// alone with ErrNotManaged. The config-hash label never covers a secret value.
