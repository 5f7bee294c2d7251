package testenv

import (
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
	return ForwardFrom(l, target), nil
}

// ForwardFrom relays each connection accepted on l (one opened in a network namespace, say) to target.
func ForwardFrom(l net.Listener, target string) *Forwarder {
	f := &Forwarder{Addr: l.Addr().String(), l: l, open: map[net.Conn]struct{}{}}
	f.wg.Go(func() { f.serve(target) })
	return f
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

// relay copies both ways until either side ends, then closes both.
func (f *Forwarder) relay(in net.Conn, target string) {
	out, err := net.DialTimeout("tcp", target, dialBound)
	if err != nil {
		in.Close() // nothing listens there (a node not started yet): the client sees the connection end
		return
	}
	if !f.track(in, out) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
	f.untrack(in, out)
}

// dialBound bounds the connection to the target.
const dialBound = 2 * time.Second

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
