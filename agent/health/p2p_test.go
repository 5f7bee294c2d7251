package health

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestNodeP2PCheck: the P2P check passes on a port that accepts and holds a connection (the node's P2P stack
// waiting for a peer's handshake), and fails on one that accepts and closes at once (Docker's proxy with nothing
// listening in the container: the node without OCR or OCR2) and on one that refuses.
func TestNodeP2PCheck(t *testing.T) {
	t.Parallel()
	serve := func(t *testing.T, hold bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				if !hold {
					conn.Close()
					continue
				}
				go func() { // hold it until the client goes, as the node waits for a handshake
					defer conn.Close()
					_, _ = conn.Read(make([]byte, 1))
				}()
			}
		}()
		return ln.Addr().String()
	}
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
		ok   bool
		says string
	}{
		{"ListeningNode", func(t *testing.T) string { return serve(t, true) }, true, "holds a connection"},
		{"ProxyWithNothingBehind", func(t *testing.T) string { return serve(t, false) }, false, "[OCR] or [OCR2] Enabled"},
		{"Refused", func(t *testing.T) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t))) }, false, "connect to the P2P port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res := newNodeP2P(tc.addr(t), time.Second, 5*time.Second).Run(ctx)
			if res.OK != tc.ok || !strings.Contains(res.Detail, tc.says) || res.Name != "node_p2p" {
				t.Errorf("%+v; want ok %t saying %q", res, tc.ok, tc.says)
			}
		})
	}
}
