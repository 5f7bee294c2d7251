package leader

import "errors"

var (
	// ErrLockLost ends a Term the moment the lock is provably gone: the session was closed or reset (the backend
	// was terminated, the server restarted or failed over, the network gave up), or pg_locks no longer shows the
	// lock for the session's backend.
	ErrLockLost = errors.New("advisory lock lost")
	// ErrTrustExpired ends a Term when no ping has proven the lock for FenceAfter since the start of the last one
	// that did. The lock may still be held on the server; the Term closes its session so it is not held for long.
	ErrTrustExpired = errors.New("advisory lock not proven within fence_after")
	// ErrReleased ends a Term given back by Release.
	ErrReleased = errors.New("advisory lock released")
	// ErrProxied: the session's pg_backend_pid() differs from the backend the connection was opened to, so
	// something (a transaction-pooling proxy) stands between the agent and PostgreSQL. A session lock cannot be held
	// through it. Acquire returns it without retrying: it is a configuration error.
	ErrProxied = errors.New("the lock session does not reach its own PostgreSQL backend (a connection pooler in between?)")
	// ErrInvalidOptions wraps every error New returns.
	ErrInvalidOptions = errors.New("invalid leader options")
)
