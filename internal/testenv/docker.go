package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

const (
	dockerPingTimeout  = 3 * time.Second  // one ping of a running engine
	dockerStartTimeout = 60 * time.Second // dockerd from exec to answering pings
	dockerLockPath     = "/run/cl-agent-testenv-dockerd.lock"
)

// dockerLogPath is where a dockerd started by EnsureDocker logs; it outlives the test binary, like the daemon.
var dockerLogPath = filepath.Join(os.TempDir(), "cl-agent-testenv-dockerd.log")

// EnsureDocker pings the engine at the default socket (or DOCKER_HOST); if it does not answer, it starts dockerd
// (logging to $TMPDIR/cl-agent-testenv-dockerd.log) and waits for the ping. The daemon it starts is the machine's
// engine, not a test fixture: it is detached and keeps running after the test binary exits. A lock file keeps
// parallel test binaries from starting two daemons.
func EnsureDocker(ctx context.Context) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	if pingDocker(ctx, cli) == nil {
		return nil
	}

	unlock, err := lockFile(ctx, dockerLockPath)
	if err != nil {
		return err
	}
	defer unlock()
	if pingDocker(ctx, cli) == nil { // another test binary started it while we waited for the lock
		return nil
	}
	if err := startDockerd(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerStartTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := pingDocker(ctx, cli)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockerd started but the engine did not answer within %s: %w\n--- %s (tail) ---\n%s",
				dockerStartTimeout, err, dockerLogPath, fileTail(dockerLogPath))
		case <-tick.C:
		}
	}
}

func pingDocker(ctx context.Context, cli *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, dockerPingTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("ping docker engine at %s (bound %s): %w", cli.DaemonHost(), dockerPingTimeout, err)
	}
	return nil
}

// startDockerd launches dockerd in its own session so that it survives us.
func startDockerd() error {
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return fmt.Errorf("the docker engine does not answer and dockerd is not on PATH: %w", err)
	}
	logFile, err := os.OpenFile(dockerLogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open dockerd log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it should it exit while we live; the ping loop reports the failure
	return nil
}

// lockFile takes an exclusive flock on path, polling until ctx ends.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, dockerStartTimeout)
	defer cancel()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: not free within %s: %w", path, dockerStartTimeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// bridge is the engine's default bridge network: containers on it reach the host at Gateway.
type bridge struct {
	Gateway netip.Addr
	Subnet  netip.Prefix
}

var bridgeCache struct {
	sync.Mutex
	b *bridge
}

// defaultBridge asks the engine (starting it if needed) for the default bridge's subnet and gateway, once per
// process. Engines that leave Gateway out of the IPAM config (20.10 does for the default bridge) have it on the
// bridge interface itself.
func defaultBridge(ctx context.Context) (bridge, error) {
	bridgeCache.Lock()
	defer bridgeCache.Unlock()
	if bridgeCache.b != nil {
		return *bridgeCache.b, nil
	}
	if err := EnsureDocker(ctx); err != nil {
		return bridge{}, err
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return bridge{}, fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		return bridge{}, fmt.Errorf("inspect docker network bridge (bound 10s): %w", err)
	}
	var b bridge
	for _, c := range res.Network.IPAM.Config {
		if c.Subnet.IsValid() && c.Subnet.Addr().Is4() {
			b = bridge{Gateway: c.Gateway, Subnet: c.Subnet}
			break
		}
	}
	if !b.Subnet.IsValid() {
		return bridge{}, fmt.Errorf("docker network bridge has no IPv4 subnet: %+v", res.Network.IPAM.Config)
	}
	if !b.Gateway.IsValid() {
		ifname := res.Network.Options["com.docker.network.bridge.name"]
		if ifname == "" {
			ifname = "docker0"
		}
		if b.Gateway, err = interfaceAddrIn(ifname, b.Subnet); err != nil {
			return bridge{}, err
		}
	}
	bridgeCache.b = &b
	return b, nil
}

func interfaceAddrIn(ifname string, subnet netip.Prefix) (netip.Addr, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("docker bridge interface %s: %w", ifname, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && subnet.Contains(ip.Unmap()) {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("no address of %s in the bridge subnet %s", ifname, subnet)
}
