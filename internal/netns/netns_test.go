package netns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// dialFromHost runs bash inside the host to open a TCP connection to addr and write one line; it reports whether
// that worked within bound.
func dialFromHost(t *testing.T, h *Host, addr *net.TCPAddr, line string, bound time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	script := fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && echo %s >&3", addr.IP, addr.Port, line)
	cmd := h.Command(ctx, "bash", "-c", script)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func TestHost(t *testing.T) {
	t.Parallel()
	h := CreateT(t)
	if h.RootIP != fmt.Sprintf("10.211.%d.1", h.Slot) || h.IP != fmt.Sprintf("10.211.%d.2", h.Slot) {
		t.Fatalf("addresses %s / %s for slot %d", h.RootIP, h.IP, h.Slot)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(h.RootIP, "0"))
	if err != nil {
		t.Fatalf("listen on the root end: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().(*net.TCPAddr)
	lines := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if s, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					lines <- fmt.Sprintf("%s from %s", s[:len(s)-1], c.RemoteAddr().(*net.TCPAddr).IP)
				}
			}()
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("listener read %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("listener read nothing, want %q", want)
		}
	}

	if err := dialFromHost(t, h, addr, "before", 5*time.Second); err != nil {
		t.Fatalf("dial from the host before the cut: %v", err)
	}
	expect("before from " + h.IP)

	ctx := context.Background()
	if err := h.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dialFromHost(t, h, addr, "during", time.Second); err == nil {
		t.Fatal("a connection got through the cut")
	}
	if err := h.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dialFromHost(t, h, addr, "after", 5*time.Second); err != nil {
		t.Fatalf("dial from the host after restore: %v", err)
	}
	expect("after from " + h.IP)
	select {
	case got := <-lines:
		t.Fatalf("unexpected line %q", got)
	default:
	}

	if err := h.Delete(); err != nil {
		t.Fatal(err)
	}
	if devExists(h.rootDev) {
		t.Errorf("veth %s still exists after Delete", h.rootDev)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, h.Name)); err == nil {
		t.Errorf("namespace %s still exists after Delete", h.Name)
	}
	if err := h.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestStaleHostIsReclaimed(t *testing.T) {
	t.Parallel()
	// A process that has exited stands in for a test binary that died without cleaning up.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := &Host{Name: fmt.Sprintf("%s%d-%d", namePrefix, lastSlot, dead.Process.Pid),
		rootDev: fmt.Sprintf("%s%dr", devPrefix, lastSlot), hostDev: fmt.Sprintf("%s%dh", devPrefix, lastSlot),
		RootIP: fmt.Sprintf("10.211.%d.1", lastSlot), IP: fmt.Sprintf("10.211.%d.2", lastSlot)}
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	if err := stale.setUp(ctx); err != nil {
		_ = stale.Delete()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stale.Delete() })

	h := CreateT(t) // considers every slot's namespace, including the stale one
	if h.Slot == lastSlot {
		t.Fatalf("got the slot of a stale host")
	}
	if devExists(stale.rootDev) {
		t.Errorf("stale veth %s was not removed", stale.rootDev)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, stale.Name)); err == nil {
		t.Errorf("stale namespace %s was not removed", stale.Name)
	}
}
