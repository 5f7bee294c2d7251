// Package testenv starts the real services that integration tests and `make demo` run against: a PostgreSQL 15
// cluster, moto_server (AWS APIs), the EC2 instance metadata mock (IMDSv2 only), a CNCF distribution image registry,
// and makes sure the docker engine answers.
//
// Each Start* function picks a free loopback port (asking the kernel, and trying again with another port when a
// neighbour takes it first), launches one process, and returns once that process itself listens on the port and
// the service answers (a readiness probe polled with a deadline; a probe answered by another process does not
// count). A failed start stops what it launched and returns an error that ends with the tail of the service's log.
//
// Processes: every service is a direct child of the caller, in its own process group, with the parent-death signal
// set to SIGKILL, so a test binary that panics or is killed leaves nothing running. Stop signals the group, waits a
// bound, then SIGKILLs it; Stop is safe to call twice. The one exception is dockerd, which EnsureDocker starts
// detached when the engine is down: it is the machine's engine, not a fixture, and outlives the caller.
//
// The *T variants (PostgresT, MotoT, IMDST, RegistryT, DockerT) are for tests: they register Stop with t.Cleanup
// and call t.Fatal when a service cannot start. A missing service is a failure, never a skip.
//
// PostgreSQL runs as the postgres user (initdb refuses root) from /usr/lib/postgresql/15/bin. The postmaster is
// started directly rather than through pg_ctl, whose daemonised postmaster would escape the parent-death signal;
// readiness is the "ready" status in postmaster.pid, which is what pg_ctl -w waits for. It listens on 127.0.0.1 and
// the docker bridge gateway so containers can connect, with TLS from a throwaway CA; ExtraListen adds an address
// (e.g. the root end of an internal/netns host's link) and the network allowed through it.
//
// It is also the one home of the small helpers every test package needs: WaitFor (fail unless a condition holds
// within a bound) and Poll (the same, reporting instead of failing), FreePort and RandomHex.
//
// Tools pinned in go.mod (ec2-metadata-mock, registry) are resolved with `go tool -n` from the module root, once per
// process, and run directly.
package testenv
