package system

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// host is one EC2 host of the pair: a container whose PID 1 is systemd, with the shipped binary and unit installed
// where user-data installs them, its own dockerd, and its own IMDS identity.
type host struct {
	t        *testing.T
	name     string // the container's name, also its hostname
	identity testenv.Identity
}

// hostSpec is what differs between hosts and tests.
type hostSpec struct {
	instanceID string
	secrets    nodeSecrets
	database   string // this test's database; its user has the same name
	leader     bool   // leader.enabled
	// containerName is container.name (default: the agent's default).
	containerName string
	// extra are configuration lines appended as they are (top-level keys not set above).
	extra []string
	// dropIn, when set, is a drop-in for cl-agent.service (the unit itself is installed unmodified).
	dropIn string
}

// The leader timings of the two-host tests: fast, and accepted by the loader's invariant.
const leaderTimings = "{enabled: true, ping_interval: 200ms, ping_timeout: 150ms, fence_after: 1s, dead_peer_timeout: 2s, takeover_guard: 4500ms, stepdown_hold: 2s}"

// startHost boots a host with the agent installed but not started: the test starts it as user-data does.
func startHost(t *testing.T, spec hostSpec) *host {
	t.Helper()
	id := testenv.Identity{InstanceID: spec.instanceID, Region: "us-east-1", AZ: "us-east-1a", PrivateIP: "10.0.1.10"}
	imds := testenv.IMDST(t, id)
	imdsURL, err := relay(strings.TrimPrefix(imds.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, name: prefix + spec.instanceID, identity: id}
	stage := t.TempDir()
	h.stageFiles(stage, spec, imdsURL)
	dockerDir, err := os.MkdirTemp(fx.dir, "docker-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = exec.Command("docker", "rm", "-f", h.name).Run()
	args := []string{"create", "--name", h.name, "--hostname", h.name,
		"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
		"--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
		"--device-cgroup-rule", "a *:* rwm", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "--stop-signal", "SIGRTMIN+3",
		"-v", dockerDir + ":/var/lib/docker", "-v", fx.storage + ":/srv/registry:ro",
		"-v", fx.registryBin + ":/usr/local/libexec/test-registry:ro",
		fx.rigImage, "/sbin/init"}
	if _, err := command(ctx, "docker", args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			h.dumpJournal()
		}
		_ = exec.Command("docker", "rm", "-f", h.name).Run()
		_ = os.RemoveAll(dockerDir)
	})
	if _, err := command(ctx, "docker", "cp", stage+"/.", h.name+":/"); err != nil {
		t.Fatal(err)
	}
	if _, err := command(ctx, "docker", "start", h.name); err != nil {
		t.Fatal(err)
	}
	h.waitBooted(ctx)
	return h
}

// stageFiles lays out what user-data installs (binary, unit, config, RDS CA) plus the test rig's registry unit.
func (h *host) stageFiles(stage string, spec hostSpec, imdsURL string) {
	leader := "{enabled: false}"
	if spec.leader {
		leader = leaderTimings
	}
	name := ""
	if spec.containerName != "" {
		name = "name: " + spec.containerName + ", "
	}
	config := []string{
		fmt.Sprintf("aws: {endpoint_url: %s, imds_endpoint: %s, imds_timeout: 10s, call_timeout: 10s}", fx.motoURL, imdsURL),
		"secrets:",
		fmt.Sprintf("  database_password: {id: %s, json_key: password}", spec.secrets.db),
		fmt.Sprintf("  api_password: {id: %s}", spec.secrets.api),
		fmt.Sprintf("  keystore_password: {id: %s}", spec.secrets.keystore),
		"node:",
		"  format: toml",
		"  network: Ethereum-Sepolia",
		"  ws_url: " + strings.Replace(fx.chainURL, "http://", "ws://", 1),
		"  http_url: " + fx.chainURL,
		"  api_email: ops@example.com",
		fmt.Sprintf("  database: {host: %s, port: %d, name: %s, user: %s, sslmode: verify-full, sslrootcert: /etc/cl-agent/rds-ca.pem}",
			fx.gateway, fx.pg.Port, spec.database, spec.database),
		fmt.Sprintf("image: {repository: %s, tag: %s}", imageRepo, imageTag),
		fmt.Sprintf("container: {%sstop_timeout: 2s, log: {driver: awslogs, group: ChainlinkLogs, options: {awslogs-endpoint: %s, awslogs-region: us-east-1}}}", name, fx.motoURL),
		"leader: " + leader,
		"health: {check_interval: 1s, check_timeout: 1s, host_interval: 1s, cloudwatch: {enabled: false}}",
	}
	config = append(config, spec.extra...)
	ca, err := os.ReadFile(fx.pg.CAFile)
	if err != nil {
		h.t.Fatal(err)
	}
	files := map[string]stagedFile{
		"usr/local/bin/cl-agent":                   {mustRead(h.t, fx.agentBin), 0o755},
		"etc/systemd/system/cl-agent.service":      {mustRead(h.t, fx.unitFile), 0o644},
		"etc/cl-agent/config.yaml":                 {strings.Join(config, "\n") + "\n", 0o600},
		"etc/cl-agent/rds-ca.pem":                  {string(ca), 0o644},
		"etc/test-registry.yml":                    {testenv.RegistryConfig("/srv/registry", innerRegistry), 0o644},
		"etc/systemd/system/test-registry.service": {registryUnit, 0o644},
	}
	if spec.dropIn != "" {
		files["etc/systemd/system/cl-agent.service.d/test.conf"] = stagedFile{spec.dropIn, 0o644}
	}
	for path, f := range files {
		full := filepath.Join(stage, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			h.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(f.data), f.mode); err != nil {
			h.t.Fatal(err)
		}
	}
	wants := filepath.Join(stage, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/test-registry.service", filepath.Join(wants, "test-registry.service")); err != nil {
		h.t.Fatal(err)
	}
}

// stagedFile is one file laid into the host before it boots.
type stagedFile struct {
	data string
	mode os.FileMode
}

// registryUnit serves the node image on the host's loopback, from this machine's registry storage (read-only).
const registryUnit = `[Unit]
Description=test rig: image registry on loopback
Before=cl-agent.service
[Service]
Environment=OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true
ExecStart=/usr/local/libexec/test-registry serve /etc/test-registry.yml
[Install]
WantedBy=multi-user.target
`

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitBooted waits until systemd has finished booting and dockerd and the registry answer.
func (h *host) waitBooted(ctx context.Context) {
	h.t.Helper()
	testenv.WaitFor(h.t, 90*time.Second, h.name+" booted with docker and the registry", func() bool {
		state, _ := h.exec(ctx, "systemctl", "is-system-running")
		if state != "running" && state != "degraded" {
			return false
		}
		_, derr := h.exec(ctx, "docker", "version")
		_, rerr := h.exec(ctx, "curl", "-fsS", "http://"+innerRegistry+"/v2/")
		return derr == nil && rerr == nil
	})
}

// exec runs a command inside the host and returns its trimmed stdout.
func (h *host) exec(ctx context.Context, args ...string) (string, error) {
	return command(ctx, "docker", append([]string{"exec", h.name}, args...)...)
}

// run is exec that fails the test on an error.
func (h *host) run(args ...string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := h.exec(ctx, args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// prop is a property of cl-agent.service as systemd sees it.
func (h *host) prop(name string) string {
	h.t.Helper()
	return h.run("systemctl", "show", "-p", name, "--value", "cl-agent.service")
}

// status is `cl-agent status --json` run on the host, as an operator does over SSH.
func (h *host) status() (control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.exec(ctx, "cl-agent", "status", "--json")
	if err != nil {
		return control.Status{}, err
	}
	var s control.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return control.Status{}, fmt.Errorf("status --json: %w: %s", err, out)
	}
	return s, nil
}

// nodeReady tells whether this host's agent reports its node ready, and its /readyz agrees.
func (h *host) nodeReady() bool {
	s, err := h.status()
	if err != nil || !s.Node.Ready || s.Role != "active" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = h.exec(ctx, "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:6688/readyz")
	return err == nil
}

// nodeContainers lists the node containers the host's dockerd runs.
func (h *host) nodeContainers() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := h.exec(ctx, "docker", "ps", "-q", "--filter", "label=cl-agent.managed=true")
	return out
}

// mainPID is the agent's process id on the host (0 when it does not run).
func (h *host) mainPID() string { return h.prop("MainPID") }

// journal is the agent's journal since boot, with priorities.
func (h *host) journal(args ...string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := h.exec(ctx, append([]string{"journalctl", "-u", "cl-agent", "--no-pager", "-o", "cat"}, args...)...)
	return out
}

func (h *host) dumpJournal() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := h.exec(ctx, "journalctl", "--no-pager", "-n", "150", "-u", "cl-agent", "-u", "docker")
	st, _ := h.exec(ctx, "systemctl", "status", "--no-pager", "cl-agent")
	h.t.Logf("host %s: systemctl status:\n%s\njournal:\n%s", h.name, st, out)
}
