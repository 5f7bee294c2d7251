// Package netns makes throwaway "hosts" for HA tests: a Linux network namespace joined to the root namespace by a
// veth pair, whose link can be cut without closing a single socket. A TCP proxy cannot fake that (it answers
// keepalives and closes connections); dropping packets in the namespace's own firewall is what a frozen switch port
// or a lost route looks like to both ends: writes succeed into the void, reads wait, and only TCP's own timers
// (keepalive, TCP_USER_TIMEOUT, retransmission) end the connection.
//
// Addressing: host n gets 10.211.n.0/30, the root end 10.211.n.1 (bind the services the host must reach there, e.g.
// testenv.ExtraListen) and the namespace end 10.211.n.2. These addresses exist only on this machine. n is chosen
// under a file lock so concurrent test binaries never share one; a namespace left behind by a process that died is
// removed when its slot is next considered.
//
// Needs root, iproute2 (`ip`) and iptables. Every command has a deadline. Delete removes the veth pair and the
// namespace (its firewall rules go with it); CreateT registers Delete with t.Cleanup, so a failed test leaves
// nothing behind.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// cmdTimeout bounds one ip/iptables command.
	cmdTimeout = 10 * time.Second
	// createTimeout bounds CreateT.
	createTimeout = 30 * time.Second

	namePrefix = "cl-agent-"      // namespace: cl-agent-<n>-<pid>
	devPrefix  = "clag"           // veth ends: clag<n>r (root) and clag<n>h (host); IFNAMSIZ is 16
	netnsDir   = "/var/run/netns" // where `ip netns add` mounts namespaces
	lockPath   = "/run/lock/cl-agent-netns.lock"
	firstSlot  = 1
	lastSlot   = 254
)

// Host is one network namespace linked to the root namespace.
type Host struct {
	Name   string // the namespace, for `ip netns exec`
	Slot   int    // n in 10.211.n.0/30
	RootIP string // 10.211.n.1: the root namespace's end of the link
	IP     string // 10.211.n.2: the host's own address
	Subnet string // 10.211.n.0/30

	rootDev, hostDev string

	mu      sync.Mutex
	cut     bool
	deleted bool
}

// Create makes a namespace with a veth link to the root namespace, addresses on both ends, and lo up.
func Create(ctx context.Context) (*Host, error) {
	unlock, err := lockSlots()
	if err != nil {
		return nil, err
	}
	defer unlock()
	slot, err := freeSlot(ctx)
	if err != nil {
		return nil, err
	}
	h := &Host{
		Name:    fmt.Sprintf("%s%d-%d", namePrefix, slot, os.Getpid()),
		Slot:    slot,
		RootIP:  fmt.Sprintf("10.211.%d.1", slot),
		IP:      fmt.Sprintf("10.211.%d.2", slot),
		Subnet:  fmt.Sprintf("10.211.%d.0/30", slot),
		rootDev: fmt.Sprintf("%s%dr", devPrefix, slot),
		hostDev: fmt.Sprintf("%s%dh", devPrefix, slot),
	}
	if err := h.setUp(ctx); err != nil {
		return nil, errors.Join(err, h.Delete())
	}
	return h, nil
}

// CreateT creates a host for the test and deletes it at cleanup; it fails the test when it cannot.
func CreateT(t testing.TB) *Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	h, err := Create(ctx)
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Delete(); err != nil {
			t.Errorf("netns: %v", err)
		}
	})
	return h
}

func (h *Host) setUp(ctx context.Context) error {
	steps := [][]string{
		{"ip", "netns", "add", h.Name},
		{"ip", "link", "add", h.rootDev, "type", "veth", "peer", "name", h.hostDev},
		{"ip", "link", "set", h.hostDev, "netns", h.Name},
		{"ip", "addr", "add", h.RootIP + "/30", "dev", h.rootDev},
		{"ip", "link", "set", h.rootDev, "up"},
		{"ip", "-n", h.Name, "addr", "add", h.IP + "/30", "dev", h.hostDev},
		{"ip", "-n", h.Name, "link", "set", h.hostDev, "up"},
		{"ip", "-n", h.Name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return fmt.Errorf("create host %s: %w", h.Name, err)
		}
	}
	return nil
}

// Command prepares name to run inside the namespace (through `ip netns exec`, which execs it: the process id is
// the command's own). The caller starts, waits for and, if need be, kills it.
func (h *Host) Command(ctx context.Context, name string, arg ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Name, name}, arg...)...)
}

// Cut drops every packet into and out of the host's link, in the namespace's own firewall. Sockets stay open on
// both sides; nothing tells either end. Cutting twice is a no-op.
func (h *Host) Cut(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cut {
		return nil
	}
	for _, rule := range h.rules() {
		if err := h.iptables(ctx, append([]string{"-I"}, rule...)...); err != nil {
			return fmt.Errorf("cut host %s: %w", h.Name, err)
		}
	}
	h.cut = true
	return nil
}

// Restore removes the rules Cut added; held connections carry on where TCP's timers have not ended them.
func (h *Host) Restore(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.cut {
		return nil
	}
	for _, rule := range h.rules() {
		if err := h.iptables(ctx, append([]string{"-D"}, rule...)...); err != nil {
			return fmt.Errorf("restore host %s: %w", h.Name, err)
		}
	}
	h.cut = false
	return nil
}

func (h *Host) rules() [][]string {
	return [][]string{
		{"INPUT", "-i", h.hostDev, "-j", "DROP"},
		{"OUTPUT", "-o", h.hostDev, "-j", "DROP"},
	}
}

func (h *Host) iptables(ctx context.Context, args ...string) error {
	// -w: wait for the xtables lock, which docker takes too.
	return run(ctx, append([]string{"ip", "netns", "exec", h.Name, "iptables", "-w", "5"}, args...)...)
}

// Delete removes the veth pair (both ends at once, synchronously) and the namespace with its firewall. Safe to call
// twice; processes still running inside keep the namespace alive until they exit, but lose their link.
func (h *Host) Delete() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.deleted {
		return nil
	}
	h.deleted = true
	return removeHost(h.Name, h.rootDev)
}

// removeHost deletes a root veth end (taking its peer with it) and a namespace, ignoring what is already gone.
func removeHost(name, rootDev string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*cmdTimeout)
	defer cancel()
	var errs []error
	if devExists(rootDev) {
		if err := run(ctx, "ip", "link", "del", rootDev); err != nil && devExists(rootDev) {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		if err := run(ctx, "ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete host %s: %w", name, errors.Join(errs...))
	}
	return nil
}

// lockSlots takes the machine-wide lock under which slots are chosen and claimed.
func lockSlots() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netns slot lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns slot lock: %w", err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// freeSlot returns the lowest slot nobody alive uses, removing hosts whose creating process has died.
func freeSlot(ctx context.Context) (int, error) {
	used := map[int]bool{}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	for _, e := range entries {
		slot, pid, ok := parseName(e.Name())
		if !ok {
			continue
		}
		if processAlive(pid) {
			used[slot] = true
			continue
		}
		if err := removeHost(e.Name(), fmt.Sprintf("%s%dr", devPrefix, slot)); err != nil {
			used[slot] = true // could not clear it: leave it alone
		}
	}
	addrs, err := exec.CommandContext(ctx, "ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	for slot := firstSlot; slot <= lastSlot; slot++ {
		if used[slot] || devExists(fmt.Sprintf("%s%dr", devPrefix, slot)) ||
			bytes.Contains(addrs, []byte(fmt.Sprintf(" 10.211.%d.", slot))) {
			continue
		}
		return slot, nil
	}
	return 0, fmt.Errorf("no free 10.211.n.0/30 slot (%d..%d in use)", firstSlot, lastSlot)
}

// parseName reads slot and creator pid from "cl-agent-<slot>-<pid>".
func parseName(name string) (slot, pid int, ok bool) {
	rest, found := strings.CutPrefix(name, namePrefix)
	if !found {
		return 0, 0, false
	}
	s, p, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	var err1, err2 error
	slot, err1 = strconv.Atoi(s)
	pid, err2 = strconv.Atoi(p)
	return slot, pid, err1 == nil && err2 == nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func devExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// run executes one command with a deadline; the error carries its output.
func run(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s (bound %s): %w: %s", strings.Join(args, " "), cmdTimeout, err, bytes.TrimSpace(out))
	}
	return nil
}
