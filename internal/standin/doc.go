// Package standin builds the test image of the stand-in Chainlink node (the program in cmd/chainlink): a static
// binary in an image FROM scratch, shaped like the real one (ENTRYPOINT ["chainlink"], EXPOSE 6688, USER
// 14933:14933), so the agent under test runs it exactly as it runs smartcontract/chainlink.
//
// BuildImage is cheap to call from many test packages: the image carries the hash of its binary and
// Dockerfile in the label cl-agent.standin.hash, and an image with the same hash is only re-tagged. Images are
// linux/amd64. The builds run the go and docker CLIs with deadlines; a failure returns their output.
//
// The program's contract (command lines, inputs, lease, HTTP, fault-injection files) is documented in
// cmd/chainlink/doc.go.
package standin
