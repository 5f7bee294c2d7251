package leader

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/internal/netns"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// childEnv makes the test binary run one elector as a child process (runChild) instead of the tests: the
// partition test starts it inside a network namespace, a separate "host".
const childEnv = "CL_AGENT_LEADER_TEST_CHILD"

// childConfig reaches the child on stdin (the DSN holds a password: never in arguments or the environment).
type childConfig struct {
	DSN        string
	Key        int64
	InstanceID string
	Timing     [5]time.Duration // ping, ping timeout, fence after, dead peer, retry
}

// childEvent is one line the child writes on stdout.
type childEvent struct {
	Ev   string    // acquired, ping, denied, ended
	At   time.Time // when it happened (a ping's start; when the end was observed)
	OK   bool      // ping: proved the lock
	PID  int       // acquired: the lock session's backend
	Err  string    // ended: the cause
	Kind string    // ended: lost, trust, released
}

// runChild is the child's main: campaign and hold, again and again, reporting on stdout, until stdin closes.
func runChild() int {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: read config:", err)
		return 2
	}
	var cc childConfig
	if err := json.Unmarshal(line, &cc); err != nil {
		fmt.Fprintln(os.Stderr, "child: config:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // the parent closes stdin to stop the child
		_, _ = io.Copy(io.Discard, in)
		cancel()
	}()

	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	emit := func(ev childEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
	}
	cfg, err := pgx.ParseConfig(cc.DSN)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	h := newHooks()
	tm := timing{ping: cc.Timing[0], pingTimeout: cc.Timing[1], fenceAfter: cc.Timing[2], deadPeer: cc.Timing[3], retry: cc.Timing[4]}
	o := tm.options(cfg, cc.Key, cc.InstanceID)
	o.hooks = h
	e, err := New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case p := <-h.pingDone.ch:
				emit(childEvent{Ev: "ping", At: p.Start, OK: p.Err == nil})
			case <-h.denied.ch:
				emit(childEvent{Ev: "denied", At: time.Now()})
			}
		}
	}()
	for {
		term, err := e.Acquire(ctx)
		if err != nil {
			return 0
		}
		emit(childEvent{Ev: "acquired", At: term.AcquiredAt(), PID: term.PID()})
		select {
		case <-term.Done():
			ev := childEvent{Ev: "ended", At: time.Now(), Err: term.Err().Error()}
			switch {
			case errors.Is(term.Err(), ErrLockLost):
				ev.Kind = "lost"
			case errors.Is(term.Err(), ErrTrustExpired):
				ev.Kind = "trust"
			}
			emit(ev)
		case <-ctx.Done():
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = term.Release(rctx)
			rcancel()
			return 0
		}
	}
}

// child is the parent's handle on a child elector.
type child struct {
	events chan childEvent
	stdin  io.WriteCloser
	stderr *bytes.Buffer
}

func (c *child) next(t *testing.T, ev string, bound time.Duration) childEvent {
	t.Helper()
	deadline := time.After(bound)
	for {
		select {
		case e, ok := <-c.events:
			if !ok {
				t.Fatalf("the child exited waiting for %q; stderr:\n%s", ev, c.stderr)
			}
			if e.Ev == ev {
				return e
			}
		case <-deadline:
			t.Fatalf("no %q from the child within %s; stderr:\n%s", ev, bound, c.stderr)
		}
	}
}

// startChild runs the test binary as an elector inside host h.
func startChild(t *testing.T, h *netns.Host, cc childConfig) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(context.Background(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	c := &child{events: make(chan childEvent, 10000), stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the child in %s: %v", h.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev childEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				c.events <- ev
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		c.stdin.Close() // asks the child to release and exit
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	b, err := json.Marshal(cc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("configure the child: %v", err)
	}
	return c
}

// TestNetworkPartition cuts the leader's host off without closing a socket. The leader's term must end by its trust
// deadline (FenceAfter after its last good ping), the server must drop its session within DeadPeerTimeout (plus
// slack), and only then may the other elector take the lock.
func TestNetworkPartition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tm   timing
	}{
		{"FastTimings", fast},           // ping 200ms, timeout 150ms, FenceAfter 1s, DeadPeerTimeout 2s
		{"DefaultTimings", defaultTime}, // ping 1s, timeout 800ms, FenceAfter 4s, DeadPeerTimeout 10s
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testPartition(t, tc.tm)
		})
	}
}

func testPartition(t *testing.T, tm timing) {
	h := netns.CreateT(t)
	pg := testenv.PostgresT(t, testenv.ExtraListen(h.RootIP, h.Subnet))
	db := newDB(t, pg)
	key := LockKey(0, db.name)
	ka := keepaliveFor(tm.deadPeer)

	c := startChild(t, h, childConfig{DSN: db.dsn(h.RootIP), Key: key, InstanceID: "i-partitioned",
		Timing: [5]time.Duration{tm.ping, tm.pingTimeout, tm.fenceAfter, tm.deadPeer, tm.retry}})
	acq := c.next(t, "acquired", 20*time.Second)

	e, hooks := newElector(t, db, "i-survivor", tm)
	if holder := holderOf(t, e); holder.InstanceID != "i-partitioned" || holder.ClientAddr != h.IP {
		t.Fatalf("Holder = %+v, want i-partitioned from %s", holder, h.IP)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	survivor := acquireAsync(t, ctx, e)
	wait(t, &hooks.denied, 5*time.Second, "denial of the survivor")

	// Steady state, then the cut. lastOK is the start of the child's last ping that proved the lock.
	var lastOK time.Time
	for range 3 {
		if p := c.next(t, "ping", 5*tm.ping); p.OK {
			lastOK = p.At
		}
	}
	admin := db.admin(t)
	cutAt := time.Now()
	if err := h.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The server's view: poll for the child's backend until it is gone.
	dropped := make(chan time.Time, 1)
	go func() {
		for {
			var n int
			qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
			err := admin.QueryRow(qctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", acq.PID).Scan(&n)
			qcancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil && n == 0 {
				dropped <- time.Now()
				return
			}
			<-time.After(20 * time.Millisecond)
		}
	}()

	var ended childEvent
	for ended.Ev == "" {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("the child exited; stderr:\n%s", c.stderr)
			}
			switch {
			case ev.Ev == "ping" && ev.OK:
				lastOK = ev.At // a ping that was answered just before the cut
			case ev.Ev == "ended":
				ended = ev
			}
		case <-time.After(tm.fenceAfter + 5*time.Second):
			t.Fatalf("the partitioned leader's term did not end; stderr:\n%s", c.stderr)
		}
	}
	var dropAt time.Time
	select {
	case dropAt = <-dropped:
	case <-time.After(ka.dropBound() + 5*time.Second):
		t.Fatalf("the server kept the partitioned session for more than %s", ka.dropBound()+5*time.Second)
	}
	won := waitAcquired(t, survivor, 10*time.Second, "i-survivor")

	t.Logf("partition: leader's last good ping at cut-%s; its term ended at cut+%s (%s after that ping, FenceAfter %s, %s)",
		cutAt.Sub(lastOK).Round(time.Millisecond), ended.At.Sub(cutAt).Round(time.Millisecond),
		ended.At.Sub(lastOK).Round(time.Millisecond), tm.fenceAfter, ended.Kind)
	t.Logf("partition: server dropped the session at cut+%s (DeadPeerTimeout %s, keepalive idle %s interval %s count %d, bound %s); survivor acquired at cut+%s",
		dropAt.Sub(cutAt).Round(time.Millisecond), tm.deadPeer, ka.Idle, ka.Interval, ka.Count, ka.dropBound(),
		won.at.Sub(cutAt).Round(time.Millisecond))

	if ended.Kind != "trust" {
		t.Errorf("the partitioned term ended with %q (%s), want ErrTrustExpired", ended.Kind, ended.Err)
	}
	if d := ended.At.Sub(lastOK); d < tm.fenceAfter || d > tm.fenceAfter+500*time.Millisecond {
		t.Errorf("the partitioned term ended %s after its last good ping, want FenceAfter (%s)", d, tm.fenceAfter)
	}
	// The server counts from the last segment it received, at most one ping interval after lastOK.
	if d := dropAt.Sub(cutAt); d > ka.dropBound()+time.Second {
		t.Errorf("the server dropped the session %s after the cut, want within %s + slack", d, ka.dropBound())
	}
	if !dropAt.After(ended.At) {
		t.Errorf("the server dropped the session (cut+%s) before the leader stopped trusting it (cut+%s)",
			dropAt.Sub(cutAt), ended.At.Sub(cutAt))
	}
	if !won.at.After(ended.At) {
		t.Errorf("the survivor acquired (cut+%s) before the partitioned leader's term ended (cut+%s)",
			won.at.Sub(cutAt), ended.At.Sub(cutAt))
	}

	// The link comes back: the old leader campaigns again and is denied; exactly one holds.
	if err := h.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.next(t, "denied", 15*time.Second)
	if won.term.Err() != nil {
		t.Fatalf("the survivor's term ended: %v", won.term.Err())
	}
	if holder := holderOf(t, e); holder.InstanceID != "i-survivor" || holder.PID != won.term.PID() {
		t.Fatalf("after the partition Holder = %+v, want i-survivor", holder)
	}
}
