package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cl-agent/cl-agent/agent/keyring"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"go.uber.org/zap"
)

// The secrets' keys, as the log names them.
const (
	databasePasswordKey = "database_password"
	apiPasswordKey      = "api_password"
	keystorePasswordKey = "keystore_password"
)

// apiNotApplied starts the problem of a rotated API password not yet carried over to the node.
const apiNotApplied = "rotated API password not applied yet"

// rotationCheck is the result of looking for rotated secrets: the fresh values and which of them changed.
type rotationCheck struct {
	fresh   secrets.NodeSecrets
	changed []string
	err     error // the fetch failed: nothing changed
	// apiErr: api_password rotated but the node's user could not be moved to it yet (fresh holds the old value).
	apiErr error
	// keystoreErr: keystore_password rotated to a value the node's key ring does not take (fresh holds the old one);
	// refused is that value's version.
	keystoreErr error
	refused     string
}

// rotationTicker ticks every secrets.poll_interval; with rotation checks off it never ticks.
func (d *Daemon) rotationTicker() interface {
	Chan() <-chan time.Time
	Stop()
} {
	every := d.host.Config.Secrets.PollInterval
	if every <= 0 {
		return never{}
	}
	return d.clock.NewTicker(every)
}

// checkRotation fetches the secrets off the loop and compares their versions with the ones held. On the active
// (r not nil) a rotated API password is first carried over to the node through its API: the node ignores .api once
// its user exists, so holding the new one alone would lock the agent out.
func (d *Daemon) checkRotation(r *running) {
	held, fetch, change := d.secrets, d.fetcher(d.refusedKeystore), d.o.ChangeAPIPassword
	nodeReady := r != nil && r.node != nil && d.node.Ready
	d.spawn(func(ctx context.Context) event {
		rc := fetch(ctx)
		if rc.err != nil || r == nil || !slices.Contains(rc.changed, apiPasswordKey) {
			return rotationChecked(rc)
		}
		err := errors.New("the node is not ready")
		if nodeReady {
			err = change(ctx, held.APIPassword, rc.fresh.APIPassword)
		}
		if err != nil {
			rc.fresh.APIPassword, rc.apiErr = held.APIPassword, err
			rc.changed = slices.DeleteFunc(rc.changed, func(k string) bool { return k == apiPasswordKey })
		}
		return rotationChecked(rc)
	})
}

// fetcher returns the fetch of a rotation check or a restart, to run off the loop: the secrets, which of them
// changed, and a rotated keystore password held back when the node's key ring would not take it (a version in
// refused is not checked again: a check costs the node's scrypt).
func (d *Daemon) fetcher(refused string) func(context.Context) rotationCheck {
	held, fetch, t := d.secrets, d.o.Fetch, d.takeover
	keystoreID := d.host.Config.Secrets.KeystorePassword.ID
	return func(ctx context.Context) rotationCheck {
		fresh, err := fetch(ctx)
		if err != nil {
			return rotationCheck{err: err}
		}
		rc := rotationCheck{fresh: fresh, changed: rotated(held, fresh)}
		if slices.Contains(rc.changed, keystorePasswordKey) {
			rc.holdBackKeystore(ctx, t, held.KeystorePassword, refused, keystoreID)
		}
		return rc
	}
}

// holdBackKeystore keeps the held keystore password when the rotated one would not open the node's key ring: the
// node can only ever use the password its key ring was encrypted with. A version refused before is not checked
// again.
func (rc *rotationCheck) holdBackKeystore(ctx context.Context, t Takeover, held secrets.Secret, refused, secretID string) {
	fresh := rc.fresh.KeystorePassword
	err := errors.New("it does not open the node's key ring")
	if fresh.VersionID != refused {
		err = checkKeystore(ctx, t, fresh, secretID)
	}
	if err == nil {
		return
	}
	rc.fresh.KeystorePassword, rc.refused = held, fresh.VersionID
	rc.keystoreErr = fmt.Errorf("rotated keystore password (version %s) held back, the node keeps version %s: %w",
		fresh.VersionID, held.VersionID, err)
	rc.changed = slices.DeleteFunc(rc.changed, func(k string) bool { return k == keystorePasswordKey })
}

// checkKeystore tells whether the node may be given this keystore password: one that opens its key ring, or, while
// the key ring is empty, one that passes the node's strength rule (then it becomes the key ring's password).
func checkKeystore(ctx context.Context, t Takeover, pw secrets.Secret, secretID string) error {
	if t == nil {
		return nil // no database login is wired: the node is the only judge
	}
	v, err := t.KeyRing(ctx, pw.Reveal())
	switch {
	case err != nil:
		return fmt.Errorf("cannot tell whether keystore password version %s opens the node's key ring: %w", pw.VersionID, err)
	case v == keyring.DoesNotOpen:
		return fmt.Errorf("keystore password version %s does not open the node's key ring", pw.VersionID)
	case v == keyring.Empty:
		if err := secrets.CheckKeystorePassword(pw.Reveal(), true); err != nil {
			return &secrets.Error{Key: keystorePasswordKey, ID: secretID, Terminal: true, Err: err}
		}
	}
	return nil
}

// tookRotation records the outcome of a rotation check in the problems, on every host: a failed fetch is a
// problem until the next good one; a held-back keystore password until a later version works or the held one is
// back in Secrets Manager.
func (d *Daemon) tookRotation(rc rotationCheck) {
	if rc.err != nil {
		d.host.Log.Warn("checking for rotated secrets failed; keeping the values held", zap.Error(rc.err))
		d.problems.set(problemSecrets, rc.err)
		return
	}
	d.problems.clear(problemSecrets)
	held := rc.keystoreErr != nil
	if held && d.refusedKeystore != rc.refused {
		d.host.Log.Error("the rotated keystore password does not open the node's key ring: the node keeps the one "+
			"that does. Re-encrypt the keys with the node's export and import (README: rotating the keystore "+
			"password), or put the working password back in Secrets Manager", zap.Error(rc.keystoreErr))
	}
	d.refusedKeystore = rc.refused
	d.problems.set(problemKeystore, rc.keystoreErr)
	d.o.Observer.SetKeystoreHeld(held)
}

// rotated takes rotated secrets on the active: the API password alone is only held (the node's user was moved to
// it); the database or keystore password restarts the node with the new values, once.
func (r *running) rotated(rc rotationCheck) {
	d := r.d
	d.tookRotation(rc)
	if rc.apiErr != nil {
		d.host.Log.Warn("the API password was rotated in Secrets Manager, but the node's user is not moved to it yet: "+
			"keeping the held one, which the node still takes; trying again at the next check", zap.Error(rc.apiErr))
		d.problems.set(problemAPI, fmt.Errorf("%s: %w", apiNotApplied, rc.apiErr))
	} else if rc.err == nil {
		d.problems.clear(problemAPI)
	}
	if len(rc.changed) == 0 || r.restarting {
		return
	}
	d.secrets = rc.fresh
	if slices.Equal(rc.changed, []string{apiPasswordKey}) {
		d.host.Log.Info("the node's API password was changed to the rotated one; no restart needed")
		return
	}
	d.host.Log.Info("secrets rotated: restarting the node with the new values", zap.Strings("secrets", rc.changed))
	r.restartNode(nil)
}

// restartWith goes on with the operator's restart once the secrets are fetched again.
func (r *running) restartWith(ev restartFetched) {
	d := r.d
	if ev.rc.err != nil {
		r.restartDone(restarted{gen: r.gen, reply: ev.reply, err: fmt.Errorf("restart: fetch the secrets again: %w", ev.rc.err)})
		return
	}
	d.tookRotation(ev.rc)
	d.secrets = ev.rc.fresh
	r.restartNode(ev.reply)
}

// restartNode re-renders and recreates the node with the secrets held, with logins that follow them first: the
// supervisor's BeforeStart expires the stale lease with the takeover's login.
func (r *running) restartNode(reply chan error) {
	d := r.d
	if err := d.ensureElection(); err != nil {
		d.host.Log.Warn("rebuilding the database logins for the current password", zap.Error(err))
	}
	d.publish() // the supervisor renders from the published secrets
	r.restarting, r.restartReply = true, reply
	node, gen := r.node, r.gen
	ctx := r.term.Context()
	go func() { d.post(restarted{gen: gen, reply: reply, err: node.Restart(ctx)}) }()
}

func (r *running) restartDone(ev restarted) {
	d := r.d
	r.restarting, r.restartReply = false, nil
	if r.node != nil {
		d.observe(r.node.Status()) // the operator's next status must show the restart
	}
	switch {
	case ev.reply != nil:
		ev.reply <- ev.err
	case ev.err != nil:
		d.host.Log.Error("restart after a secret rotation failed", zap.Error(ev.err))
	}
}

// rotated lists the secrets whose value changed. A new version of the value held (a secret put back, or
// re-put unchanged) is no rotation: the node already runs on that value, and restarting it would be an outage for
// nothing. The held secret keeps its version id then (the same value under the same version is no change either).
func rotated(held, fresh secrets.NodeSecrets) []string {
	var changed []string
	for _, s := range []struct {
		key        string
		old, fresh secrets.Secret
	}{
		{databasePasswordKey, held.DatabasePassword, fresh.DatabasePassword},
		{apiPasswordKey, held.APIPassword, fresh.APIPassword},
		{keystorePasswordKey, held.KeystorePassword, fresh.KeystorePassword},
	} {
		if !s.old.Equal(s.fresh) {
			changed = append(changed, s.key)
		}
	}
	return changed
}

// never is the ticker of rotation checks when they are off.
type never struct{}

func (never) Chan() <-chan time.Time { return nil }
func (never) Stop()                  {}
