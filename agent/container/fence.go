package container

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// Fence stops this host's node container (SIGTERM, then SIGKILL after stopTimeout), removes it and shreds the
// node's files in secretsDir. It needs only the Docker engine, not a running agent: `cl-agent fence` (systemd's
// ExecStopPost) and the supervisor's own shutdown use it. It proves that no node of this agent runs: no container by
// that name is success, and so is a container by that name without the cl-agent.managed label — the agent never
// created it and never touches it (the supervisor refuses to start next to it and says so), so it is not this
// agent's node and holding the lock for it would only keep the peer from running the node. The files are
// shredded in every case.
func Fence(ctx context.Context, e Engine, name, secretsDir string, stopTimeout time.Duration) error {
	err := fence(ctx, e, name, stopTimeout)
	if serr := nodefiles.Shred(secretsDir); serr != nil {
		err = errors.Join(err, fmt.Errorf("fence: shred the node's files: %w", serr))
	}
	return err
}

func fence(ctx context.Context, e Engine, name string, stopTimeout time.Duration) error {
	c, err := e.InspectContainer(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("fence: %w", err)
	case c.Labels[LabelManaged] != "true":
		return nil // not this agent's node: left alone
	}
	if c.Running || c.Status == "restarting" || c.Status == "paused" {
		if err := e.StopContainer(ctx, c.ID, stopTimeout); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("fence: %w", err)
		}
	}
	if err := e.RemoveContainer(ctx, c.ID); err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	return nil
}

// ManagedLister is an Engine that can list the containers cl-agent manages.
type ManagedLister interface {
	Engine
	ManagedContainers(ctx context.Context) (ids []string, err error)
}

// FenceAll is Fence for every container on the engine that carries the cl-agent.managed label, whatever its name:
// `cl-agent fence` when the configuration (and so the node's container name) cannot be read. A host's engine
// serves its one agent, so every managed container there is this host's node.
func FenceAll(ctx context.Context, e ManagedLister, secretsDir string, stopTimeout time.Duration) (fenced int, err error) {
	ids, err := e.ManagedContainers(ctx)
	if err != nil {
		err = fmt.Errorf("fence: %w", err)
	}
	for _, id := range ids {
		if ferr := fence(ctx, e, id, stopTimeout); ferr != nil {
			err = errors.Join(err, ferr)
			continue
		}
		fenced++
	}
	if serr := nodefiles.Shred(secretsDir); serr != nil {
		err = errors.Join(err, fmt.Errorf("fence: shred the node's files: %w", serr))
	}
	return fenced, err
}
