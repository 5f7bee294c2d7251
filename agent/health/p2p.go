package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/cl-agent/cl-agent/agent/state"
)

// p2pHold is how long the P2P check keeps its connection open waiting for the other end to close it: the node's
// P2P stack waits far longer for a peer's handshake, while Docker's port proxy, with nothing listening in the
// container, closes a connection it accepted at once.
const p2pHold = 300 * time.Millisecond

// newNodeP2P checks the node's P2P.V2 port at addr (127.0.0.1:<node.p2p.listen_port>, as published): it passes
// when a connection is accepted and held open. A plain connect proves nothing on a published port, since Docker's
// proxy accepts whatever the container does; nothing listening behind it shows as a connection closed at once.
// v2.19.0 starts its P2P stack only for OCR or OCR2, so that is the likely cause (measured on the real node:
// test/ha TestP2PFollowsTheActive). The check sends nothing: the node sees a peer that never said who it is.
func newNodeP2P(addr string, interval, timeout time.Duration) Check {
	return &nodeP2P{spec: spec{string(state.NodeP2P), interval, timeout}, addr: addr}
}

type nodeP2P struct {
	spec
	addr string
}

func (c *nodeP2P) Run(ctx context.Context) Result {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fail(c.name, fmt.Sprintf("connect to the P2P port %s: %v", c.addr, err))
	}
	defer conn.Close()
	hold := time.Now().Add(p2pHold)
	if dl, ok := ctx.Deadline(); ok && dl.Before(hold) {
		hold = dl
	}
	_ = conn.SetReadDeadline(hold)
	_, err = conn.Read(make([]byte, 1))
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return pass(c.name, fmt.Sprintf("%s accepts and holds a connection", c.addr))
	case err != nil:
		return fail(c.name, fmt.Sprintf("%s accepted a connection and closed it at once (%v): nothing listens on the "+
			"node's P2P port (v2.19.0 starts its P2P stack only with [OCR] or [OCR2] Enabled)", c.addr, err))
	}
	return pass(c.name, fmt.Sprintf("%s answers", c.addr))
}
