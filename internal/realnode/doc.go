// Package realnode runs the REAL Chainlink node in Docker for integration tests: the node built from its Go
// module (github.com/smartcontractkit/chainlink/v2, v2.19.0 by default) by test/images/chainlink/build.sh, against
// the project's test PostgreSQL (internal/testenv), on the files the agent itself renders. It is for tests only.
//
// Image builds the image the first time (a cold build downloads ~5 GB of modules and compiles for minutes; later
// calls find it cached by content and return in well under a second). A failed build fails the test: an
// integration test never skips because the node is missing.
//
// A node runs the way agent/container.Spec runs it: user 14933:14933 on the default bridge, the secrets
// directory read-only at /run/chainlink, the data directory read-write at /chainlink (its RootDir), extra host
// files (the database CA) read-only at their own paths. Its HTTP port 6688 is published on 127.0.0.1 only, on a
// port the engine picks. Validate runs `chainlink node … validate` in a throwaway container; Start runs the node
// and WaitReady polls /readyz with a deadline (no sleeps). Every container is removed at cleanup, and the log of
// a node whose test failed is attached to the test output.
package realnode
