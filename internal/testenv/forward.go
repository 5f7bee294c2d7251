package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Forwarder relays TCP connections from a listening address to a target: it lets containers reach a service that
// listens on this machine's loopback only (moto, the IMDS mock, the chain simulator) through the docker bridge's
// gateway. It is no stand-in for a network path under test: a relay answers keepalives itself, so partitions are
// tested with network namespaces, never through it.
type Forwarder struct {
	Addr string // host:port it listens on

	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

// Forward listens on host (port chosen by the kernel) and relays each connection to target.
func Forward(host, target string) (*Forwarder, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("forward %s: %w", target, err)
	}
	f := &Forwarder{Addr: l.Addr().String(), l: l, open: map[net.Conn]struct{}{}}
	f.wg.Go(func() { f.serve(target) })
	return f, nil
}

func (f *Forwarder) serve(target string) {
	for {
		in, err := f.l.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() { f.relay(in, target) })
	}
}

func (f *Forwarder) relay(in net.Conn, target string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		in.Close()
		return
	}
	if !f.track(in, out) {
		return
	}
	var both sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	both.Go(func() { pipe(out, in) })
	both.Go(func() { pipe(in, out) })
	both.Wait()
	f.untrack(in, out)
}

func (f *Forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open == nil { // closed
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		f.open[c] = struct{}{}
	}
	return true
}

func (f *Forwarder) untrack(conns ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(f.open, c)
	}
}

// Close stops listening, cuts every relayed connection and waits for the relays to end.
func (f *Forwarder) Close() error {
	err := f.l.Close()
	f.mu.Lock()
	for c := range f.open {
		c.Close()
	}
	f.open = nil
	f.mu.Unlock()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
