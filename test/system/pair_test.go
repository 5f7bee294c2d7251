package system

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestPairUnderSystemd runs two hosts on one database, both with the shipped unit, and breaks the active one.
func TestPairUnderSystemd(t *testing.T) {
	t.Parallel() // each test has hosts, a database and secrets of its own
	secrets := createSecrets(t, dbPassword)
	db := newDatabase(t, dbPassword)
	a := startHost(t, hostSpec{instanceID: "i-0b000000000000001", secrets: secrets, database: db, leader: true})
	b := startHost(t, hostSpec{instanceID: "i-0b000000000000002", secrets: secrets, database: db, leader: true})
	events := watchNodes(t, a, b)

	// With leader election, READY=1 means "warm and campaigning": the first host then takes the lock.
	a.run("systemctl", "start", "cl-agent")
	testenv.WaitFor(t, time.Minute, "the first host's node ready", a.nodeReady)
	b.run("systemctl", "start", "cl-agent")
	if s, err := b.status(); err != nil || s.Role != "standby" {
		t.Fatalf("the second host is not a warm standby after systemctl start: %+v %v", s, err)
	}
	active, standby := a, b

	t.Run("KillActiveAgentFailsOver", func(t *testing.T) {
		began := time.Now()
		active.run("systemctl", "kill", "-s", "KILL", "--kill-who=main", "cl-agent")
		testenv.WaitFor(t, time.Minute, "the standby's node ready", standby.nodeReady)
		t.Logf("failover after kill -9 of the active agent under systemd: %s to the new node ready", time.Since(began).Round(time.Millisecond))
		testenv.WaitFor(t, time.Minute, "the old active back as a standby", func() bool {
			s, err := active.status()
			return err == nil && s.Role == "standby"
		})
		active, standby = standby, active
	})
	t.Run("KillActiveDockerdLeavesOneNode", func(t *testing.T) {
		began := time.Now()
		active.run("pkill", "-KILL", "-x", "dockerd")
		// The node lives on under containerd until dockerd is back; the agent holds the lock meanwhile, and the
		// restarted dockerd (systemd restarts it) kills the orphan, so the agent starts a new one.
		testenv.WaitFor(t, 2*time.Minute, "a node ready on one host after the dockerd crash", func() bool {
			return events.restarted(active.name, began) && (active.nodeReady() || standby.nodeReady())
		})
		t.Logf("recovery from a dockerd crash on the active: %s to a node ready again", time.Since(began).Round(time.Millisecond))
		if a, b := active.nodeContainers(), standby.nodeContainers(); (a == "") == (b == "") {
			t.Fatalf("node containers after the dockerd crash: active %q, standby %q; want exactly one", a, b)
		}
	})
	t.Run("StepdownWithAHungDockerdKeepsTheLock", func(t *testing.T) {
		testenv.WaitFor(t, time.Minute, "the standby warm", func() bool {
			s, err := standby.status()
			return err == nil && s.Role == "standby"
		})
		active.run("pkill", "-STOP", "-x", "dockerd")
		stepped := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, err := active.exec(ctx, "cl-agent", "stepdown")
			stepped <- err
		}()
		// The engine call that would prove the node stopped times out (30s); the agent then keeps the lock.
		testenv.WaitFor(t, 2*time.Minute, "the active to say its node is not proven stopped", func() bool {
			s, err := active.status()
			return err == nil && s.Lock.Held && strings.Contains(s.LastError, "not proven stopped")
		})
		if s, err := standby.status(); err != nil || s.Role != "standby" {
			t.Fatalf("the standby took over while the old node was not proven stopped: %+v %v", s, err)
		}
		resumed := time.Now()
		active.run("pkill", "-CONT", "-x", "dockerd")
		if err := <-stepped; err != nil {
			t.Fatalf("stepdown: %v", err)
		}
		testenv.WaitFor(t, time.Minute, "the standby's node ready", standby.nodeReady)
		t.Logf("stepdown with a hung dockerd: the standby's node ready %s after dockerd resumed", time.Since(resumed).Round(time.Millisecond))
		active, standby = standby, active
	})
	overlap := events.overlap(a.name, b.name)
	t.Logf("node overlap between the hosts over the whole test, from their Docker events: %s\n%s", overlap, events)
	if overlap > 0 {
		t.Fatalf("both hosts ran a node at once for %s:\n%s", overlap, events)
	}
}

// nodeEvents records the start and the end of every node container on each host, from the hosts' own Docker
// event streams (resubscribed with --since after a dockerd restart, so events of the restore are not lost).
type nodeEvents struct {
	mu  sync.Mutex
	log map[string][]nodeEvent // by host
}

type nodeEvent struct {
	at     time.Time
	action string // start | die
	id     string
}

func watchNodes(t *testing.T, hosts ...*host) *nodeEvents {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	e := &nodeEvents{log: map[string][]nodeEvent{}}
	for _, h := range hosts {
		wg.Go(func() { e.follow(ctx, h.name) })
	}
	return e
}

// follow streams one host's container events until ctx ends.
func (e *nodeEvents) follow(ctx context.Context, hostName string) {
	since := time.Now().Add(-time.Hour)
	for ctx.Err() == nil {
		cmd := exec.CommandContext(ctx, "docker", "exec", hostName, "docker", "events", "--format", "{{json .}}",
			"--since", strconv.FormatInt(since.Unix(), 10), "--filter", "type=container",
			"--filter", "label=cl-agent.managed=true", "--filter", "event=start", "--filter", "event=die")
		out, err := cmd.StdoutPipe()
		if err == nil && cmd.Start() == nil {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var ev struct {
					Action   string `json:"Action"`
					ID       string `json:"id"`
					TimeNano int64  `json:"timeNano"`
				}
				if json.Unmarshal(sc.Bytes(), &ev) == nil {
					at := time.Unix(0, ev.TimeNano)
					e.add(hostName, nodeEvent{at: at, action: ev.Action, id: ev.ID})
					since = at.Add(-time.Second) // replay overlap is deduplicated by add
				}
			}
			_ = cmd.Wait()
		}
		select { // dockerd is down or restarting: subscribe again shortly
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (e *nodeEvents) add(hostName string, ev nodeEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, have := range e.log[hostName] {
		if have == ev {
			return
		}
	}
	e.log[hostName] = append(e.log[hostName], ev)
}

// restarted reports whether a node container started on the host after t0.
func (e *nodeEvents) restarted(hostName string, t0 time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.log[hostName] {
		if ev.action == "start" && ev.at.After(t0) {
			return true
		}
	}
	return false
}

// intervals are the periods a node ran on the host, in Unix nanoseconds; one still running ends now.
func (e *nodeEvents) intervals(hostName string) [][2]int64 {
	e.mu.Lock()
	evs := append([]nodeEvent(nil), e.log[hostName]...)
	e.mu.Unlock()
	sort.Slice(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	started := map[string]int64{}
	var out [][2]int64
	for _, ev := range evs {
		switch ev.action {
		case "start":
			started[ev.id] = ev.at.UnixNano()
		case "die":
			if s, ok := started[ev.id]; ok {
				out = append(out, [2]int64{s, ev.at.UnixNano()})
				delete(started, ev.id)
			}
		}
	}
	for _, s := range started {
		out = append(out, [2]int64{s, time.Now().UnixNano()})
	}
	return out
}

// overlap is how long nodes ran on both hosts at once.
func (e *nodeEvents) overlap(h1, h2 string) time.Duration {
	var total time.Duration
	for _, x := range e.intervals(h1) {
		for _, y := range e.intervals(h2) {
			total += time.Duration(max(0, min(x[1], y[1])-max(x[0], y[0])))
		}
	}
	return total
}

func (e *nodeEvents) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s string
	for h, evs := range e.log {
		for _, ev := range evs {
			s += h + " " + ev.at.Format("15:04:05.000") + " " + ev.action + " " + ev.id[:12] + "\n"
		}
	}
	return s
}
