package daemon

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
)

// published is what the loop shows the rest of the process: written by the loop only, read by anyone under mu.
type published struct {
	mu       sync.Mutex
	status   control.Status // without the checks, which Status adds when asked
	lastBeat time.Time
	img      image.Image
	secrets  secrets.NodeSecrets
	elector  Elector  // stepdown --wait looks up the holder with it
	takeover Takeover // the supervisor's BeforeStart expires the stale lease with it
}

// problem is one kind of trouble the loop tracks; each is set and cleared by the code that owns it, so clearing
// one never hides another.
type problem int

// In the order `status` shows them: the first that is set is last_error.
const (
	problemLock     problem = iota // lost the lock (until the next term)
	problemFence                   // the node could not be proven stopped
	problemWarm                    // warming up failed (image or secrets)
	problemSecrets                 // the last rotation check could not fetch the secrets
	problemAPI                     // a rotated API password is not on the node yet
	problemKeystore                // a rotated keystore password does not open the node's key ring: held back
	nProblems
)

type problems [nProblems]string

func (p *problems) set(k problem, err error) {
	p[k] = ""
	if err != nil {
		p[k] = err.Error()
	}
}

func (p *problems) clear(k problem) { p[k] = "" }

// first is the most important problem, "" when there is none.
func (p *problems) first() string {
	for _, s := range p {
		if s != "" {
			return s
		}
	}
	return ""
}

// publish copies the loop's state into the snapshot readers see.
func (d *Daemon) publish() {
	c := d.host.Config
	st := control.Status{
		Role: string(d.role), InstanceID: d.host.Identity.InstanceID, Since: d.since, Message: d.message,
		Lock: control.Lock{Enabled: d.o.Election != nil, Held: d.lockHeld, Holder: d.holder},
		Node: control.Node{Container: c.Container.Name, State: string(d.node.State), Ready: d.node.Ready,
			Restarts: d.node.Restarts, Image: d.img.String(), Digest: d.img.Digest},
		LastError: d.problems.first(),
		Image:     d.imageStatus(),
	}
	if st.Node.State == "" {
		st.Node.State = string(container.StateStopped)
	}
	if d.node.Image != "" && d.role != state.Standby { // a standby's is the image it is warm on, not its last node's
		st.Node.Image, st.Node.Digest = d.node.Image, d.node.Digest
	}
	if st.LastError == "" {
		st.LastError = d.node.LastError
	}
	if st.Lock.Enabled {
		st.Lock.Key = leader.LockKey(c.Leader.LockKey, c.Node.Database.Name)
	}
	d.pub.mu.Lock()
	defer d.pub.mu.Unlock()
	d.pub.status = st
	d.pub.img, d.pub.secrets = d.img, d.secrets
	d.pub.elector, d.pub.takeover = d.elector, d.takeover
}

// setRole enters a role (or says what it is doing now) and tells systemd.
func (d *Daemon) setRole(r state.Role, message string) {
	if d.role != r {
		d.since = d.clock.Now()
	}
	d.role, d.message = r, message
	d.host.Log.Info("role", zap.String("role", string(r)), zap.String("doing", message))
	d.publish()
	d.o.Notify.Notify("STATUS=" + statusLine(d.Status()))
}

// beat is the main loop's heartbeat: systemd's watchdog and /healthz look at it.
func (d *Daemon) beat() {
	d.pub.mu.Lock()
	d.pub.lastBeat = d.clock.Now()
	d.pub.mu.Unlock()
	d.o.Notify.Notify("WATCHDOG=1\nSTATUS=" + statusLine(d.Status()))
}

// ready sends READY=1 once: on a standby once it is warm and campaigning, on the active once the node is up.
func (d *Daemon) ready() {
	if !d.readySent {
		d.readySent = true
		d.o.Notify.Notify("READY=1")
	}
}

// observe takes the supervisor's status: starting until the node is ready, then active.
func (d *Daemon) observe(s container.Status) {
	d.node = s
	switch {
	case s.Ready && d.role == state.Starting:
		d.setRole(state.Active, "node ready")
		d.ready()
	case !s.Ready && d.role == state.Active:
		d.setRole(state.Starting, "node not ready: "+string(s.State))
	}
}

// sawHolder records who holds the lock, for status and to count a failover.
func (d *Daemon) sawHolder(h leader.Holder) {
	d.holder = ""
	if h.Held {
		d.holder = h.ApplicationName
	}
	if h.Held && h.InstanceID != d.host.Identity.InstanceID {
		d.lastPeer = h.ApplicationName
	}
}

// statusLine is systemd's one-line story: role, node state, image, last problem.
func statusLine(s control.Status) string {
	line := fmt.Sprintf("%s; node %s", s.Role, s.Node.State)
	if s.Node.Image != "" {
		line += "; " + s.Node.Image
	}
	if s.Message != "" {
		line += "; " + s.Message
	}
	for _, c := range s.Checks {
		if c.Name == string(state.NodeWalletBalance) && !c.Skipped && c.Detail != "" {
			line += "; wallet " + c.Detail
		}
	}
	if s.LastError != "" {
		line += "; problem: " + s.LastError
	} else if failing := failingChecks(s.Checks); failing != "" {
		line += "; failing: " + failing
	}
	return line
}

func failingChecks(cs []control.Check) string {
	var names []string
	for _, c := range cs {
		if !c.OK && !c.Skipped {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

// Status is the snapshot `cl-agent status` prints.
func (d *Daemon) Status() control.Status {
	d.pub.mu.Lock()
	st := d.pub.status
	d.pub.mu.Unlock()
	st.Checks = d.o.Checks()
	return st
}

// HealthState is what /healthz, /readyz and the metrics need; cheap and never blocking.
func (d *Daemon) HealthState() health.AgentState {
	d.pub.mu.Lock()
	defer d.pub.mu.Unlock()
	st := d.pub.status
	node := container.State(st.Node.State)
	return health.AgentState{
		Role: state.Role(st.Role), LockEnabled: st.Lock.Enabled, LockHeld: st.Lock.Held,
		NodeUp:    node == container.StateRunning || node == container.StateReady,
		NodeReady: st.Node.Ready, LastBeat: d.pub.lastBeat,
	}
}

// APICredentials is the node API login the health checks use: held in memory, never written again.
func (d *Daemon) APICredentials() (email, password string, ok bool) {
	d.pub.mu.Lock()
	defer d.pub.mu.Unlock()
	if d.pub.secrets.APIPassword.Empty() {
		return "", "", false
	}
	return d.host.Config.Node.APIEmail, d.pub.secrets.APIPassword.Reveal(), true
}

// SetObserver sets who is told about failovers and the image; call it before Run.
func (d *Daemon) SetObserver(o Observer) { d.o.Observer = o }
