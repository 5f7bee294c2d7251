// Package standin builds the test image of the stand-in Chainlink node (the program in cmd/chainlink): a static
// binary in an image FROM scratch, shaped like the real one (ENTRYPOINT ["chainlink"], EXPOSE 6688, USER
// 14933:14933), so the agent under test runs it exactly as it runs smartcontract/chainlink.
//
// BuildImage is cheap to call from many test packages: the image carries the hash of its binary and
// Dockerfile in the label cl-agent.standin.hash, and an image with the same hash is only re-tagged. Images are
// linux/amd64. The builds run the go and docker CLIs with deadlines; a failure returns their output.
//
// # Releases
//
// BuildRelease builds the image of one Release: the same binary, with the release's settings baked in as ENV
// lines, so each release is an image of its own (its own hash label, its own digest once pushed) and an upgrade
// test can move a pair from one release to another. BuildImage is the zero Release. The variants:
//
//	Release{Version: "2.11.0"}               --version prints "chainlink version 2.11.0@standin"; sessions
//	                                         are named "Chainlink 2.11.0 |App|<uuid>"
//	Release{NeverReady: true}                start takes the lease, migrates, and never opens its HTTP port:
//	                                         GET /readyz never answers 200, the agent's test of a ready node
//	Release{RefuseKey: "WebServer.Foo"}      validate and start refuse a config.toml with that key, exit 1 with
//	                                         the real node's "Error running app: failed to decode config TOML:
//	                                         … missing field" (a release that removed a key the config still has)
//	Release{MigrateTo: 20240910}             start records version 20240910 in goose_migrations, the real
//	                                         node's table, before it is ready (past the point of no return);
//	                                         every other release records version 1, never lowering the highest
//
// Fields combine. A release's build can fail only as BuildImage's can.
//
// The program's contract (command lines, inputs, lease, HTTP, fault-injection files) is documented in
// cmd/chainlink/doc.go.
package standin
