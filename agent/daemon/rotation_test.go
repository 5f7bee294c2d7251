package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

func TestRestartOnActive(t *testing.T) {
	h := start(t, false, nil, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	denied := error(&secrets.Error{Key: "api_password", ID: "ApiSecret", Terminal: true, Err: secrets.ErrAccessDenied})
	h.fetchErr.Store(&denied)
	if err := h.d.Restart(ctx); err == nil || !strings.Contains(err.Error(), "fetch the secrets again") {
		t.Fatalf("restart without fresh secrets must say so, got %v", err)
	}
	if node.restarts != 0 {
		t.Error("node restarted without fresh secrets")
	}
	h.fetchErr.Store(nil)
	h.version.Store(2)
	if err := h.d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if node.restarts != 1 {
		t.Errorf("node restarted %d times, want 1", node.restarts)
	}
	if h.held().APIPassword.VersionID != "v2" {
		t.Errorf("the restart did not take the fresh secrets")
	}
}

func TestRotatedSecretRestartsTheActiveNode(t *testing.T) {
	h := start(t, false, func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	polled := h.fetches.Load()
	testenv.WaitFor(t, 5*time.Second, "three rotation checks with unchanged versions", func() bool { return h.fetches.Load() >= polled+3 })
	node.mu.Lock()
	restarts := node.restarts
	node.mu.Unlock()
	if restarts != 0 {
		t.Fatalf("restarted %d times without a rotation", restarts)
	}
	h.version.Store(7)
	testenv.WaitFor(t, 5*time.Second, "node restarted after the rotation", func() bool {
		node.mu.Lock()
		defer node.mu.Unlock()
		return node.restarts == 1
	})
	if got := h.held().KeystorePassword.VersionID; got != "v7" {
		t.Errorf("held version %s after the rotation, want v7", got)
	}
}

// TestRotatedDatabasePasswordReachesTheActiveLogins: after a rotation on the active, the takeover that runs before
// the node's next start logs in with the new password (RDS managed rotation locked it out before).
func TestRotatedDatabasePasswordReachesTheActiveLogins(t *testing.T) {
	h, _, _ := activate(t, nil)
	if got := h.elections.Load(); got != 1 {
		t.Fatalf("%d elections built before the rotation, want 1", got)
	}
	h.version.Store(3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.d.Restart(ctx); err != nil { // fetches the rotated secrets and starts the node again
		t.Fatal(err)
	}
	if err := h.d.beforeStart(ctx); err != nil { // what the supervisor runs before that start
		t.Fatal(err)
	}
	if got := h.elections.Load(); got != 2 {
		t.Fatalf("%d elections built after the rotation, want 2: the takeover still logs in with the old password", got)
	}
	if by := h.takeover.expiredBy.Load(); by == nil || *by != "v3" {
		t.Fatalf("the stale lease was expired by the takeover of password version %v, want v3", by)
	}
}

// TestRotatedAPIPasswordGoesThroughTheNode: the active moves the node's API user to a rotated password (the node
// ignores .api once its user exists) and only then holds it, without restarting the node; a failed change keeps
// the held password, says so in the status, and is tried again.
func TestRotatedAPIPasswordGoesThroughTheNode(t *testing.T) {
	h := start(t, false, func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	held := func() string { return h.held().APIPassword.VersionID }

	failure := errors.New("PATCH /v2/user/password answered 500")
	h.apiChangeErr.Store(&failure)
	h.apiVersion.Store(5)
	testenv.WaitFor(t, 5*time.Second, "the failed change in the status", func() bool {
		return strings.Contains(h.d.Status().LastError, "rotated API password not applied yet: PATCH")
	})
	if got := held(); got != "v0" {
		t.Fatalf("held API password %s after a failed change; want the old v0, which the node still takes", got)
	}

	h.apiChangeErr.Store(nil)
	select {
	case got := <-h.apiChanges:
		if got != "v0->v5" {
			t.Fatalf("change asked %s, want v0->v5", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change was not tried again")
	}
	testenv.WaitFor(t, 5*time.Second, "the rotated password held", func() bool { return held() == "v5" })
	testenv.WaitFor(t, 5*time.Second, "the problem cleared", func() bool { return h.d.Status().LastError == "" })
	node.mu.Lock()
	defer node.mu.Unlock()
	if node.restarts != 0 {
		t.Fatalf("the node restarted %d times for an API password rotation; want none", node.restarts)
	}
}

func TestRotatedSecretRefreshesTheStandby(t *testing.T) {
	h := start(t, true, func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }, nil)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	if h.elections.Load() != 1 {
		t.Fatalf("elector built %d times before any rotation", h.elections.Load())
	}
	h.version.Store(3)
	testenv.WaitFor(t, 5*time.Second, "standby holds the rotated secrets", func() bool {
		return h.held().DatabasePassword.VersionID == "v3"
	})
	testenv.WaitFor(t, 5*time.Second, "campaigning again with an elector for the new database password", func() bool {
		return h.elections.Load() == 2 && h.elector.acquires.Load() == 2
	})
}

// TestStandbyProblemClearsAfterAGoodFetch: one throttled Secrets Manager call on the standby is a problem until the
// next good fetch, and the health it publishes says healthy again then (it used to stay unhealthy for the term,
// which disabled the unhealthy-active handover).
func TestStandbyProblemClearsAfterAGoodFetch(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := startWith(t, setup{leader: true, clock: clock, config: func(c *config.Config) { c.Secrets.PollInterval = time.Minute }})
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	report := func() string {
		if r := h.takeover.lastReport.Load(); r != nil {
			return *r
		}
		return ""
	}
	throttled := error(errors.New("ThrottlingException: Rate exceeded"))
	h.fetchErr.Store(&throttled)
	testenv.WaitFor(t, 5*time.Second, "the failed fetch published as unhealthy", func() bool {
		clock.Advance(healthReportEvery)
		return strings.Contains(h.d.Status().LastError, "ThrottlingException") && strings.HasPrefix(report(), "false: problem: ")
	})
	h.fetchErr.Store(nil)
	testenv.WaitFor(t, 5*time.Second, "the next good fetch clears it and the standby reports healthy", func() bool {
		clock.Advance(healthReportEvery)
		return h.d.Status().LastError == "" && report() == "true: warm"
	})
}

// TestBadRotatedSecretStaysInTheStatus: a rotated secret that breaks the node's rules is refused (the node keeps
// running on what it has) and the refusal stays in the status until a good version is fetched; the node's own status
// changes, at every tick, do not wipe it.
func TestBadRotatedSecretStaysInTheStatus(t *testing.T) {
	h, _, node := activateWith(t, setup{config: func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }})
	bad := error(&secrets.Error{Key: "api_password", ID: "ApiSecret", Terminal: true, Err: secrets.ErrPasswordRule})
	h.fetchErr.Store(&bad)
	testenv.WaitFor(t, 5*time.Second, "the refusal in the status", func() bool {
		return strings.Contains(h.d.Status().LastError, "api_password")
	})
	beats := h.notes.count("WATCHDOG=1")
	testenv.WaitFor(t, 5*time.Second, "twenty ticks", func() bool { return h.notes.count("WATCHDOG=1") >= beats+20 })
	if got := h.d.Status().LastError; !strings.Contains(got, "api_password") {
		t.Fatalf("the refusal left the status after some ticks: last_error %q", got)
	}
	if h.role() != state.Active || node.restartCount() != 0 {
		t.Fatalf("role %s, %d restarts; the node must keep running on the secrets it has", h.role(), node.restartCount())
	}
	h.fetchErr.Store(nil)
	testenv.WaitFor(t, 5*time.Second, "a good fetch clears it", func() bool { return h.d.Status().LastError == "" })
}

// TestRotatedMeansANewValue: a rotation is a new version with another value. A new version of the value held (the
// working keystore password put back after a held-back one, or any secret re-put unchanged) restarts nothing: the
// node already runs on it (found on the real node: the put-back restarted it for a 2.3 s outage).
func TestRotatedMeansANewValue(t *testing.T) {
	held := secrets.NodeSecrets{
		DatabasePassword: secrets.NewSecret("db-password-0123456789", "v1"),
		APIPassword:      secrets.NewSecret("api-password-0123456789", "v1"),
		KeystorePassword: secrets.NewSecret("keystore-password-0123456789", "v1"),
	}
	again := func(s secrets.Secret, version string) secrets.Secret { return secrets.NewSecret(s.Reveal(), version) }
	for name, tc := range map[string]struct {
		fresh secrets.NodeSecrets
		want  []string
	}{
		"SameVersions": {held, nil},
		"NewVersionsOfTheSameValues": {secrets.NodeSecrets{DatabasePassword: again(held.DatabasePassword, "v2"),
			APIPassword: again(held.APIPassword, "v2"), KeystorePassword: again(held.KeystorePassword, "v3")}, nil},
		"KeystoreRotated": {secrets.NodeSecrets{DatabasePassword: held.DatabasePassword, APIPassword: held.APIPassword,
			KeystorePassword: secrets.NewSecret("keystore-password-rotated-0123", "v2")}, []string{keystorePasswordKey}},
		"AllRotated": {secrets.NodeSecrets{DatabasePassword: secrets.NewSecret("db-password-rotated-012345", "v2"),
			APIPassword: secrets.NewSecret("api-password-rotated-012345", "v2"), KeystorePassword: secrets.NewSecret("keystore-password-rotated-0123", "v2")},
			[]string{databasePasswordKey, apiPasswordKey, keystorePasswordKey}},
	} {
		if got := rotated(held, tc.fresh); !slices.Equal(got, tc.want) {
			t.Errorf("%s: rotated = %v; want %v", name, got, tc.want)
		}
	}
}
