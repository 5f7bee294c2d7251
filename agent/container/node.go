package container

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// ErrNotManaged: a container holds the node's name but does not carry the cl-agent.managed label; the agent
// leaves it alone.
var ErrNotManaged = errors.New("not managed by cl-agent")

// dataDirMode is what the node narrows its root directory to anyway.
const dataDirMode = 0o700

// bringUp makes the node run and be ready. A running container that matches the desired spec is adopted
// (left from an earlier run of the agent, or after a missed event); anything else under the node's name that
// cl-agent manages is replaced. With recreate, the container is replaced even when it matches.
func (s *Supervisor) bringUp(ctx context.Context, recreate bool) (ContainerSpec, error) {
	s.setState(StateStarting, "")
	r, err := s.o.Render(ctx)
	if err != nil {
		return ContainerSpec{}, fmt.Errorf("render the node's files: %w", err)
	}
	defer r.Wipe()
	spec, err := Spec(s.o.Config, s.o.Identity, s.o.Image, r)
	if err != nil {
		return ContainerSpec{}, err
	}
	cur, err := s.o.Engine.InspectContainer(ctx, s.name)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return spec, err
	case cur.Labels[LabelManaged] != "true":
		return spec, fmt.Errorf("container %q (%.12s) exists and is %w: remove or rename it", s.name, cur.ID, ErrNotManaged)
	case !recreate && cur.Running && cur.Labels[LabelConfigHash] == spec.Hash && cur.Image == spec.Config.Image:
		return spec, s.adopt(ctx, cur)
	default:
		if err := s.remove(ctx, cur); err != nil {
			return spec, err
		}
	}
	return spec, s.start(ctx, spec, r)
}

// adopt takes over a running container that matches the desired spec and waits until it is ready.
func (s *Supervisor) adopt(ctx context.Context, c ContainerInfo) error {
	s.log.Info("adopting the running node container", zap.String("id", short(c.ID)), zap.String("image", c.Image))
	s.setState(StateRunning, c.ID)
	err := s.waitReady(ctx, c.ID)
	s.shred() // files left by an agent that died while the node started
	if err != nil {
		s.stop(ctx, c.ID)
		return err
	}
	s.setState(StateReady, c.ID)
	return nil
}

// remove stops and removes a managed container that is not the desired one.
func (s *Supervisor) remove(ctx context.Context, c ContainerInfo) error {
	why := "it stopped"
	if c.Running {
		why = "it does not match the desired state"
		if err := s.o.Engine.StopContainer(ctx, c.ID, s.o.Config.Container.StopTimeout); err != nil {
			return err
		}
	}
	s.log.Info("removing the old node container", zap.String("id", short(c.ID)), zap.String("reason", why))
	return s.o.Engine.RemoveContainer(ctx, c.ID)
}

// start pulls the image if needed, runs BeforeStart, writes the files, creates and starts the container, and
// waits until the node is ready. The files are shredded as soon as the node is ready, and on every failure.
func (s *Supervisor) start(ctx context.Context, spec ContainerSpec, r *nodefiles.Rendered) error {
	k := s.o.Config.Container
	if err := EnsureImage(ctx, s.o.Engine, spec.Config.Image, s.o.PullInactivity, s.o.PullTimeout, s.log); err != nil {
		return err
	}
	if s.o.BeforeStart != nil {
		if err := s.o.BeforeStart(ctx); err != nil {
			return fmt.Errorf("before starting the node: %w", err)
		}
	}
	// The node refuses a root directory it cannot narrow to 0700, so it must own it; what it wrote there must stay
	// its own (an older unit let systemd hand it all to root at every start, at config.OlderUnitDataDir); and a
	// non-empty directory of someone else is refused (exit 2), never taken over.
	n, err := fsutil.PrepareNodeDir(k.DataDir, dataDirMode, s.owner, k.DataDir == config.OlderUnitDataDir)
	if err != nil {
		return fmt.Errorf("the node's data directory: %w", err)
	}
	if n > 0 {
		s.log.Warn("the node's data directory was owned by root: given back to the node", zap.String("dir", k.DataDir), zap.Int("entries", n))
	}
	if err := nodefiles.Write(k.SecretsDir, r, s.owner); err != nil {
		s.shred()
		return err
	}
	written := time.Now()
	id, err := s.createAndStart(ctx, spec)
	if err == nil {
		err = s.waitReady(ctx, id)
	}
	s.shred()
	if s.onFiles != nil {
		s.onFiles(written, time.Now())
	}
	if err != nil {
		if id != "" {
			s.stop(ctx, id)
		}
		return err
	}
	s.log.Info("node ready; its files are shredded", zap.String("id", short(id)),
		zap.Duration("files_lifetime", time.Since(written).Round(time.Millisecond)))
	s.setState(StateReady, id)
	return nil
}

// createAndStart returns the id of the container once it was created, even when starting it failed.
func (s *Supervisor) createAndStart(ctx context.Context, spec ContainerSpec) (string, error) {
	id, err := s.o.Engine.CreateContainer(ctx, spec)
	if err != nil {
		return "", err
	}
	s.started++
	restarts := s.started - 1
	s.update(func(st *Status) { st.ContainerID, st.Restarts = id, restarts })
	if err := s.o.Engine.StartContainer(ctx, id); err != nil {
		return id, err
	}
	s.log.Info("node container started", zap.String("id", short(id)), zap.String("image", spec.Config.Image))
	s.setState(StateRunning, id)
	return id, nil
}

// stop stops a container whose start failed, so a node that never got ready does not linger. It stays for
// post-mortems (docker logs, inspect) until the next start replaces it.
func (s *Supervisor) stop(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Config.Container.StopTimeout+shutdownMargin)
	defer cancel()
	if err := s.o.Engine.StopContainer(ctx, id, s.o.Config.Container.StopTimeout); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Warn("stopping the failed node container", zap.String("id", short(id)), zap.Error(err))
	}
}

func short(id string) string { return id[:min(12, len(id))] }
