package ha

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// forwardLoopback makes 127.0.0.1:port inside network namespace ns lead to 127.0.0.1:port in the root namespace,
// until the test ends. A namespace has a loopback of its own: without this, an agent inside could not reach the
// services that listen on the root namespace's loopback (moto, the metadata mock, the registry, which dockerd only
// pulls from without TLS on 127.0.0.0/8) nor its node's published port. The forwarder runs in the test process and
// is not subject to a Cut (that drops packets on the namespace's link, not on its loopback): a cut host still
// reaches its local node, as in production, and only the database is cut off.
func forwardLoopback(tb testing.TB, ns string, port int) {
	tb.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := listenInNamespace(ns, addr)
	if err != nil {
		tb.Fatalf("forward %s into %s: %v", addr, ns, err)
	}
	f := testenv.ForwardFrom(ln, addr)
	tb.Cleanup(func() { _ = f.Close() })
}

// listenInNamespace opens a TCP listener inside the named network namespace. A socket belongs to the namespace
// of the thread that created it, so one locked OS thread enters the namespace, listens, and goes back; the
// listener keeps working from any thread afterwards.
func listenInNamespace(ns, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is unlocked only once it is back in its own namespace; a goroutine that ends while locked
		// takes its thread down with it, so a thread stuck in the wrong namespace is never reused.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter namespace %s: %w", ns, err)}
			return
		}
		ln, lerr := net.Listen("tcp", addr)
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: errors.Join(lerr, fmt.Errorf("leave namespace %s: %w", ns, err))}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln: ln, err: lerr}
	}()
	r := <-ch
	return r.ln, r.err
}
