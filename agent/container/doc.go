// Package container owns the Chainlink node's container on this host: the supervisor that keeps it up, its
// container spec, the pull of its image (EnsureImage) and the fence that stops it without a running agent. Which
// image runs is decided by package image.
//
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
// alone — the supervisor will not start next to it (ErrNotManaged, retried with backoff), and a fence counts it as
// no node of this agent's. The config-hash label never covers a secret value.
//
// NodeValidator is the production nodefiles.Validator: the node's own `chainlink node … validate` on the written
// files, in a throwaway container of the node's image (no network, read-only, the node's user), labelled
// LabelThrowaway and never LabelManaged, bounded (DefaultValidateTimeout) and removed after every run. The node's
// refusal is a *nodefiles.RefusedError with its reason; a run that could not happen is a plain error.
//
// Every Docker call goes through Engine, the few engine calls the supervisor uses, each bounded by a deadline and
// named in its error.
package container
