package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

type harness struct {
	nodeSick  atomic.Bool  // the health checks say the node fails
	elections atomic.Int32 // how often the daemon built an elector
	version   atomic.Int32 // the secrets' version id that fetch returns
	fetches   atomic.Int32
	fetchErr  atomic.Pointer[error]
	// fenceFails is how many more fence attempts fail; fences counts them all.
	fenceFails atomic.Int32
	fences     atomic.Int32
	// apiVersion, when set, is the API password's version alone (a rotation of that secret only); apiChanges
	// records the node-side changes asked for ("held->rotated"), apiChangeErr fails them.
	apiVersion atomic.Int32
	// keystoreVersion, when set, is the keystore password's version alone.
	keystoreVersion atomic.Int32
	observer        *fakeObserver
	validated       chan string // the tags of the candidates validated
	validateErr     atomic.Pointer[error]
	apiChanges      chan string
	apiChangeErr    atomic.Pointer[error]
	d               *Daemon
	elector         *fakeElector
	takeover        *fakeTakeover
	notes           *recorder
	nodes           chan *fakeNode
	cancel          context.CancelFunc
	done            chan error
}

// setup is what a test changes before the daemon starts.

type setup struct {
	leader bool
	config func(*config.Config)
	warm   error
	node   func(*fakeNode) // applied to every node the daemon makes
	clock  clockwork.Clock // nil: the real clock
	peer   *leader.Holder  // who the campaign sees holding the lock; nil: nobody
}

func start(t *testing.T, leaderEnabled bool, edit func(*config.Config), warmErr error) *harness {
	t.Helper()
	return startWith(t, setup{leader: leaderEnabled, config: edit, warm: warmErr})
}

// startWith starts a daemon on fakes, as set up.
func startWith(t *testing.T, su setup) *harness {
	t.Helper()
	cfg := config.Default()
	cfg.Leader.Enabled = su.leader
	cfg.Leader.TakeoverGuard = 300 * time.Millisecond
	cfg.Leader.StepdownHold = 300 * time.Millisecond
	cfg.Secrets.PollInterval = 0
	cfg.Image.Repository = warmImage.Repository
	if su.config != nil {
		su.config(&cfg)
	}
	h := &harness{notes: &recorder{}, nodes: make(chan *fakeNode, 10), done: make(chan error, 1), apiChanges: make(chan string, 10),
		observer: &fakeObserver{}, validated: make(chan string, 10)}
	o := Options{
		Host:     &agent.Host{Config: &cfg, Log: zap.NewNop(), Identity: identity.Identity{InstanceID: "i-0aaa"}},
		Notify:   h.notes,
		Tick:     10 * time.Millisecond,
		Clock:    su.clock,
		Observer: h.observer,
		Warm: func(_ context.Context, _ secrets.NodeSecrets, rec pair.Record) (image.Image, error) {
			if rec.Exists {
				return rec.Image, su.warm
			}
			return warmImage, su.warm
		},
		Validate: func(_ context.Context, img image.Image, _ secrets.NodeSecrets) error {
			h.validated <- img.Tag
			if err := h.validateErr.Load(); err != nil {
				return *err
			}
			return nil
		},
		Pull: func(context.Context, image.Image) error { return nil },
		Resolve: func(_ context.Context, tag string) (image.Image, error) {
			if tag == "" {
				tag = "2.11.0"
			}
			return image.Image{Repository: "r", Tag: tag, Digest: "sha256:" + strings.Repeat(tag[len(tag)-1:], 64)}, nil
		},
		Fetch: func(context.Context) (secrets.NodeSecrets, error) {
			h.fetches.Add(1)
			if err := h.fetchErr.Load(); err != nil {
				return secrets.NodeSecrets{}, *err
			}
			return h.secrets(), nil
		},
		Checks: func() []control.Check {
			return []control.Check{{Name: string(state.NodeHealth), OK: !h.nodeSick.Load(), Detail: "207: EVM.1 failing"}}
		},
		NewNode: func(img image.Image, hooks NodeHooks) (Node, error) {
			n := &fakeNode{img: img, beforeStart: hooks.BeforeStart, onStatus: hooks.OnStatus}
			if su.node != nil {
				su.node(n)
			}
			h.nodes <- n
			return n, nil
		},
		ChangeAPIPassword: func(_ context.Context, held, rotated secrets.Secret) error {
			if err := h.apiChangeErr.Load(); err != nil {
				return *err
			}
			h.apiChanges <- held.VersionID + "->" + rotated.VersionID
			return nil
		},
		Fence: func(context.Context) error {
			h.fences.Add(1)
			if h.fenceFails.Add(-1) >= 0 {
				return errors.New("docker engine unreachable")
			}
			return nil
		},
	}
	h.takeover = &fakeTakeover{}
	if !su.leader {
		o.Database = func(pw secrets.Secret) (Takeover, error) { return versionedTakeover{h.takeover, pw.VersionID}, nil }
	}
	if su.leader {
		h.elector = &fakeElector{grant: make(chan *fakeTerm), now: time.Now}
		if su.clock != nil {
			h.elector.now = su.clock.Now
		}
		h.elector.peer.Store(su.peer)
		o.Election = func(pw secrets.Secret) (Elector, Takeover, error) {
			h.elections.Add(1)
			return h.elector, versionedTakeover{h.takeover, pw.VersionID}, nil
		}
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("daemon did not stop within 5s")
		}
	})
	return h
}

// warmImage is what a host of a new pair warms up on.
var warmImage = image.Image{Repository: "r", Tag: "2.10.0", Digest: "sha256:" + strings.Repeat("a", 64)}

// secrets are the fake Secrets Manager's current values: every version id is "v<version>".
func (h *harness) secrets() secrets.NodeSecrets {
	v := fmt.Sprintf("v%d", h.version.Load())
	api := v
	if n := h.apiVersion.Load(); n != 0 {
		api = fmt.Sprintf("v%d", n)
	}
	keystore := v
	if n := h.keystoreVersion.Load(); n != 0 {
		keystore = fmt.Sprintf("v%d", n)
	}
	return secrets.NodeSecrets{
		DatabasePassword: secrets.NewSecret("db-password-0123456789-"+v, v),
		APIPassword:      secrets.NewSecret("api-password-0123456789-"+api, api),
		KeystorePassword: secrets.NewSecret("keystore-password-0123456789-"+keystore, keystore),
	}
}

// held is the secrets the daemon holds, as its loop last published them.
func (h *harness) held() secrets.NodeSecrets {
	h.d.pub.mu.Lock()
	defer h.d.pub.mu.Unlock()
	return h.d.pub.secrets
}

func (h *harness) role() state.Role { return state.Role(h.d.Status().Role) }

// activate starts a leader-enabled daemon and makes it active with a fresh term; it returns the term's node too.
func activate(t *testing.T, nodeSetup func(*fakeNode)) (*harness, *fakeTerm, *fakeNode) {
	t.Helper()
	return activateWith(t, setup{node: nodeSetup})
}

// activateWith is activate as set up (leader election is on).
func activateWith(t *testing.T, su setup) (*harness, *fakeTerm, *fakeNode) {
	t.Helper()
	su.leader = true
	h := startWith(t, su)
	h.takeover.gone.Store(true)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	term := newFakeTerm()
	h.elector.grant <- term
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	return h, term, node
}
