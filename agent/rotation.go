package agent

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/bootstrap"
)

// rotationCheck is the result of looking for rotated secrets: the fresh values and which of them changed.
type rotationCheck struct {
	fresh   bootstrap.NodeSecrets
	changed []string
	// apiErr: api_password rotated but the node's user could not be moved to it yet (fresh holds the old value).
	apiErr error
}

// apiPasswordKey names the API password among the rotated secrets.
const apiPasswordKey = "api_password"

// rotationTicker ticks every secrets.poll_interval; with rotation checks off it never ticks.
func (d *Daemon) rotationTicker() *time.Ticker {
	every := d.host.Config.Secrets.PollInterval
	if every <= 0 {
		t := time.NewTicker(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTicker(every)
}

// checkRotation fetches the secrets and compares their version ids with the ones held. A failed fetch changes
// nothing (the node keeps running on what it has) and is reported as the last problem.
func (d *Daemon) checkRotation(ctx context.Context) rotationCheck {
	fresh, err := d.fetch(ctx)
	if err != nil {
		d.host.Log.Warn("checking for rotated secrets failed; keeping the values held", zap.Error(err))
		d.setProblem(err)
		return rotationCheck{}
	}
	d.mu.Lock()
	held := d.secrets
	d.mu.Unlock()
	return rotationCheck{fresh: fresh, changed: rotated(held, fresh)}
}

// rotated lists the secrets whose version changed.
func rotated(held, fresh bootstrap.NodeSecrets) []string {
	var changed []string
	for _, s := range []struct {
		key        string
		old, fresh bootstrap.Secret
	}{
		{"database_password", held.DatabasePassword, fresh.DatabasePassword},
		{apiPasswordKey, held.APIPassword, fresh.APIPassword},
		{"keystore_password", held.KeystorePassword, fresh.KeystorePassword},
	} {
		if s.old.VersionID != s.fresh.VersionID {
			changed = append(changed, s.key)
		}
	}
	return changed
}
