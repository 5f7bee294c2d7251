package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/state"
)

// stepdownPoll is how often `stepdown --wait` looks for the peer holding the lock.
const stepdownPoll = 200 * time.Millisecond

var _ control.Handler = (*Daemon)(nil)

// ask hands a command to the state machine and waits for its answer.
func (d *Daemon) ask(ctx context.Context, kind state.Request) error {
	r := request{kind: kind, reply: make(chan error, 1)}
	select {
	case d.requests <- r:
	case <-d.stopped:
		return fmt.Errorf("the daemon is stopping: %s not taken", kind)
	case <-ctx.Done():
		return fmt.Errorf("the daemon did not take the %s request: %w", kind, ctx.Err())
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", kind, ctx.Err())
	}
}

// Restart implements control.Handler.
func (d *Daemon) Restart(ctx context.Context) error { return d.ask(ctx, state.Restart) }

// Stepdown implements control.Handler.
func (d *Daemon) Stepdown(ctx context.Context, wait bool) (string, error) {
	if d.o.Election == nil {
		return "", errors.New("leader election is disabled (leader.enabled: false): there is no peer to hand over to")
	}
	if err := d.ask(ctx, state.Stepdown); err != nil {
		return "", err
	}
	if !wait {
		return "stepped down: node stopped, lock released", nil
	}
	d.pub.mu.Lock()
	elector := d.pub.elector
	d.pub.mu.Unlock()
	for {
		h, err := elector.Holder(ctx)
		if err == nil && h.Held && h.InstanceID != d.host.Identity.InstanceID {
			return "stepped down: " + h.ApplicationName + " holds the lock", nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("stepped down, but no other host took the lock in time: %w", ctx.Err())
		case <-d.clock.After(stepdownPoll):
		}
	}
}

// refuse answers a command this state cannot carry out.
func (d *Daemon) refuse(r request) {
	holder := d.holder
	if holder == "" {
		holder = "no host"
	}
	r.reply <- fmt.Errorf("this host is %s (%s holds the lock): %s applies to the active host", d.role, holder, r.kind)
}
