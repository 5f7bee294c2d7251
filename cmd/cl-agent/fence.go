package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
)

// runFence stops (SIGTERM, then SIGKILL after container.stop_timeout) and removes this host's node container
// and shreds its files. It needs no daemon: systemd runs it as ExecStopPost after every end of the agent, so a
// killed agent never leaves a node running. With a configuration that no longer loads it still fences: every
// container on this host's engine with the cl-agent.managed label (whatever name the configuration gave it), with
// the default secrets directory and stop timeout. Leaving a node running is worse.
func runFence(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("fence", errOut)
	if err := f.parse(args); err != nil {
		return err
	}
	c, cerr := config.Load(*f.configPath)
	engine, err := container.NewDockerEngine(0)
	if err != nil {
		return err
	}
	defer engine.Close()
	if cerr != nil {
		k := config.Default().Container
		fmt.Fprintf(errOut, "cl-agent fence: %v; fencing every container with the %s label\n", cerr, container.LabelManaged)
		ctx, cancel := context.WithTimeout(ctx, k.StopTimeout+4*container.DefaultCallTimeout)
		defer cancel()
		n, err := container.FenceAll(ctx, engine, k.SecretsDir, k.StopTimeout)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "fenced: %d managed container(s) stopped and removed; files in %s shredded\n", n, k.SecretsDir)
		return nil
	}
	k := c.Container
	ctx, cancel := context.WithTimeout(ctx, k.StopTimeout+3*container.DefaultCallTimeout)
	defer cancel()
	if err := container.Fence(ctx, engine, k.Name, k.SecretsDir, k.StopTimeout); err != nil {
		return err
	}
	fmt.Fprintf(out, "fenced: container %q stopped and removed (if it was there); files in %s shredded\n", k.Name, k.SecretsDir)
	return nil
}
