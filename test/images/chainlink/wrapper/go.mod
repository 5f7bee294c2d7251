// The wrapper module of the real Chainlink node image (test/images/chainlink/build.sh). It is not part of the
// cl-agent module: it exists only to build github.com/smartcontractkit/chainlink/v2 (whose module root is the
// node's main package) at an exact version. build.sh rewrites the require line for another version.
module github.com/cl-agent/cl-agent/test/images/chainlink/wrapper

go 1.22.8

require github.com/smartcontractkit/chainlink/v2 v2.19.0

// Carried over from chainlink/v2's own go.mod: a dependent module does not inherit replace directives.
replace (
	github.com/btcsuite/btcd/btcec/v2 => github.com/btcsuite/btcd/btcec/v2 v2.3.2
	github.com/gogo/protobuf => github.com/regen-network/protobuf v1.3.3-alpha.regen.1
	github.com/sourcegraph/sourcegraph/lib => github.com/sourcegraph/sourcegraph-public-snapshot/lib v0.0.0-20240822153003-c864f15af264
)
