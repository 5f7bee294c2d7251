package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// FreePort returns a TCP port that the kernel reports free on every address (it binds the wildcard address), so a
// test may listen on it on loopback or on all addresses. Another process may take it before the test binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return port
}

// RandomHex returns n random bytes as 2n hex digits: names of databases, containers, images and directories that
// parallel tests and earlier runs cannot share.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
