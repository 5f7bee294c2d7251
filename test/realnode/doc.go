// Package realnode holds the integration tests of the agent against the REAL Chainlink node (v2.19.0, built from
// its Go module by test/images/chainlink/build.sh; internal/realnode runs it): the files the agent renders are
// accepted by the node's own validate, the node starts on them and answers /readyz, its own database lease keeps a
// second node waiting, and its database sessions carry the application_name the agent's peer checks rely on.
//
// The node's chain client address is a closed port: v2.19.0 starts and becomes ready without a chain. The tests
// need root, Docker and PostgreSQL 15 (internal/testenv); a missing one, or an image that cannot be built, fails
// them. Build the image first (`make node-image`): a cold build takes longer than a test timeout.
package realnode
