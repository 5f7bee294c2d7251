package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cl-agent/cl-agent/agent/control"
)

// The bounds of `cl-agent upgrade`: asking (the daemon resolves the target and records the request) is short; with
// --wait, a real node's first start on a new release migrates its database before it is ready, which takes minutes.
const (
	upgradeAskTimeout  = 2 * time.Minute
	upgradeWaitTimeout = 30 * time.Minute
)

// runUpgrade asks the local daemon to move the pair to another image (README, "Upgrades"). Any host may ask: the
// request is written to the pair's record in the database, and the two agents carry it out. The daemon's refusal
// keeps its exit code (a downgrade or a refused validation: 2 or 5).
func runUpgrade(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("upgrade", errOut)
	to := f.String("to", "", "the tag to upgrade to (default: the newest stable release within image.major)")
	allowDowngrade := f.Bool("allow-downgrade", false, "allow this one upgrade to go to an older release than the highest that ran")
	wait := f.Bool("wait", false, "return once the upgrade is done, refused, rolled back or failed")
	timeout := f.Duration("timeout", 0, fmt.Sprintf("how long to wait (default %s, or %s with --wait)", upgradeAskTimeout, upgradeWaitTimeout))
	if err := f.parse(args); err != nil {
		return err
	}
	bound, err := upgradeBound(*wait, *timeout)
	if err != nil {
		return err
	}
	c := controlClient(f)
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	msg, err := c.Upgrade(ctx, control.UpgradeRequest{To: *to, AllowDowngrade: *allowDowngrade, Wait: *wait})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("no answer from the daemon within %s (--timeout); a requested upgrade goes on without this "+
			"command: follow it with `cl-agent status`: %w", bound, err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, msg)
	return nil
}

// upgradeBound is the command's bound: --timeout, else the short one to ask, or the long one with --wait.
func upgradeBound(wait bool, timeout time.Duration) (time.Duration, error) {
	switch {
	case timeout < 0:
		return 0, usagef("upgrade: --timeout %s is negative", timeout)
	case timeout > 0:
		return timeout, nil
	case wait:
		return upgradeWaitTimeout, nil
	}
	return upgradeAskTimeout, nil
}
