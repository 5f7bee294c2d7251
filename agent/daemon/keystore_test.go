package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestRotatedKeystorePasswordIsHeldBack: a rotated keystore password that does not open the node's key ring is
// never given to the node. The active keeps the one that works, with no restart, and says so in the status and the
// metric; the refused version is not checked again at every poll. Once the operator has re-encrypted the key ring
// for it, `cl-agent restart` checks it again and the node restarts with it.
func TestRotatedKeystorePasswordIsHeldBack(t *testing.T) {
	h, _, node := activateWith(t, setup{config: func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }})
	ring := "v0"
	h.takeover.keyRingVersion.Store(&ring)
	h.keystoreVersion.Store(4)
	testenv.WaitFor(t, 5*time.Second, "the held-back rotation in the status", func() bool {
		return strings.Contains(h.d.Status().LastError, "rotated keystore password (version v4) held back, the node keeps version v0")
	})
	if !h.observer.keystoreHeld.Load() {
		t.Error("the keystore_rotation_held metric is not set")
	}
	checks, polls := h.takeover.keyRingChecks.Load(), h.fetches.Load()
	testenv.WaitFor(t, 5*time.Second, "three more polls", func() bool { return h.fetches.Load() >= polls+3 })
	if got := h.takeover.keyRingChecks.Load(); got != checks {
		t.Errorf("the refused version was checked %d more times; a check costs the node's scrypt", got-checks)
	}
	if got := h.held().KeystorePassword.VersionID; got != "v0" {
		t.Fatalf("held keystore version %s; the node's key ring opens only with v0", got)
	}
	if n := node.restartCount(); n != 0 {
		t.Fatalf("the node restarted %d times for a keystore password its key ring does not take", n)
	}

	ring = "v4" // the operator re-encrypted the keys (export, import) for the new password
	h.takeover.keyRingVersion.Store(&ring)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.held().KeystorePassword.VersionID; got != "v4" || node.restartCount() != 1 {
		t.Fatalf("after the restart: keystore version %s, %d restarts; want v4 and one restart", got, node.restartCount())
	}
	testenv.WaitFor(t, 5*time.Second, "the problem and the metric cleared", func() bool {
		return h.d.Status().LastError == "" && !h.observer.keystoreHeld.Load()
	})
}

// TestStartRefusesAKeystorePasswordTheKeyRingDoesNotTake: before every start the held keystore password is checked
// against the node's key ring: one it does not open never reaches the node (the start fails, retried, saying why);
// a weak one for an empty key ring breaks the node's strength rule, a terminal failure (exit 5).
func TestStartRefusesAKeystorePasswordTheKeyRingDoesNotTake(t *testing.T) {
	h, _, _ := activate(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ring := "v9"
	h.takeover.keyRingVersion.Store(&ring)
	err := h.d.beforeStart(ctx)
	if err == nil || !strings.Contains(err.Error(), "keystore password version v0 does not open the node's key ring") {
		t.Fatalf("beforeStart with a key ring of another password: %v", err)
	}
	ring = ""
	h.takeover.keyRingVersion.Store(&ring)
	if err := h.d.beforeStart(ctx); err != nil {
		t.Fatalf("a strong password for an empty key ring: %v", err)
	}

	weak := secrets.NewSecret("short-v1", "v1")
	err = checkKeystore(ctx, h.takeover, weak, "WalletSecret")
	var se *secrets.Error
	if !errors.As(err, &se) || !se.Terminal || se.Key != keystorePasswordKey || strings.Contains(err.Error(), "short-v1") {
		t.Fatalf("a weak password for an empty key ring: %v; want a terminal keystore_password error without the value", err)
	}
}

// TestStandbyChecksTheKeyRingAheadOfATakeover: a campaigning standby has the node's key ring judge its held keystore
// password off the loop, so the check before a start after a takeover finds the verdict remembered instead of
// paying the node's scrypt then; it does again after a rotation check (the active's node may have sealed a new
// database's key ring since).
func TestStandbyChecksTheKeyRingAheadOfATakeover(t *testing.T) {
	h := start(t, true, func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }, nil)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	testenv.WaitFor(t, 5*time.Second, "a key ring check before any takeover", func() bool { return h.takeover.keyRingChecks.Load() >= 1 })
	checks, polls := h.takeover.keyRingChecks.Load(), h.fetches.Load()
	testenv.WaitFor(t, 5*time.Second, "more checks with the rotation polls", func() bool {
		return h.fetches.Load() >= polls+2 && h.takeover.keyRingChecks.Load() > checks
	})
	if h.role() != state.Standby {
		t.Fatalf("role %s; the checks must not take the standby anywhere", h.role())
	}
}
