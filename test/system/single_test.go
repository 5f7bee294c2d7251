package system

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// newDatabase creates this test's database, owned by a user of the same name, and returns the name.
func newDatabase(t *testing.T, password string) string {
	t.Helper()
	name := strings.ReplaceAll(strings.TrimPrefix(prefix, "clagent-"), "-", "_") + strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fx.pg.CreateDatabase(ctx, name, name, password); err != nil {
		t.Fatal(err)
	}
	return name
}

const dbPassword = "Db-P@ss:w/rd?#%-0123456789"

// nodeName is not the default container name: fence must find the node by its label when the configuration is
// unreadable.
const nodeName = "chainlink-node"

// testHooks arms the agent's test-only panic trigger, in a drop-in: the unit itself stays as shipped.
const testHooks = "[Service]\nEnvironment=CL_AGENT_TEST_HOOKS=panic-on-sigusr1\n"

// TestUnitRunsTheNode drives one host (leader.enabled false) through what an operator and systemd do to it.
func TestUnitRunsTheNode(t *testing.T) {
	t.Parallel() // each test has hosts, a database and secrets of its own
	secrets := createSecrets(t, dbPassword)
	h := startHost(t, hostSpec{instanceID: "i-0a000000000000001", secrets: secrets,
		database: newDatabase(t, dbPassword), dropIn: testHooks, containerName: nodeName})

	t.Run("StartReturnsWithTheNodeReady", func(t *testing.T) {
		began := time.Now()
		h.run("systemctl", "enable", "cl-agent")
		h.run("systemctl", "start", "cl-agent") // Type=notify: returns at READY=1
		t.Logf("systemctl start returned after %s", time.Since(began).Round(time.Millisecond))
		if !h.nodeReady() {
			t.Fatalf("systemctl start returned but the node is not ready; status: %s", h.prop("StatusText"))
		}
		if got := h.prop("ActiveState"); got != "active" {
			t.Fatalf("ActiveState = %q", got)
		}
	})
	t.Run("StatusLine", func(t *testing.T) {
		line := h.prop("StatusText")
		if !strings.HasPrefix(line, "active; node ready") || !strings.Contains(line, imageRepo) {
			t.Fatalf("systemctl's status line = %q, want the role, the node's state and its image", line)
		}
	})
	t.Run("HostCheckPasses", func(t *testing.T) {
		testenv.WaitFor(t, 15*time.Second, "the host check to pass under the unit's sandbox", func() bool {
			s, err := h.status()
			if err != nil {
				return false
			}
			for _, c := range s.Checks {
				if c.Name == "host" {
					return c.OK && !c.Skipped
				}
			}
			return false
		})
	})
	t.Run("NodeDataKeepsItsOwner", func(t *testing.T) {
		// A file the node wrote, as the node's uid.
		h.run("install", "-o", "14933", "-g", "14933", "-m", "0600", "/dev/null", "/var/lib/cl-agent/node/written-by-node")
		h.run("systemctl", "restart", "cl-agent")
		assertOwner(t, h, "/var/lib/cl-agent/node", "/var/lib/cl-agent/node/written-by-node")
		if !h.nodeReady() {
			t.Fatal("node not ready after systemctl restart")
		}
	})
	t.Run("DataReownedByAnOlderUnitIsGivenBack", func(t *testing.T) {
		// What the unit of 42eff39 (StateDirectory=cl-agent/node) did at every start.
		h.run("chown", "-R", "root:root", "/var/lib/cl-agent/node")
		h.run("systemctl", "restart", "cl-agent")
		assertOwner(t, h, "/var/lib/cl-agent/node", "/var/lib/cl-agent/node/written-by-node")
		if !h.nodeReady() {
			t.Fatal("node not ready after its data was given back")
		}
	})
	t.Run("KillMainPIDFencesAndRestarts", func(t *testing.T) {
		before := h.prop("NRestarts")
		h.run("systemctl", "kill", "-s", "KILL", "--kill-who=main", "cl-agent")
		waitRestarted(t, h, before)
	})
	t.Run("HangIsKilledByTheWatchdogAndRestarted", func(t *testing.T) {
		before := h.prop("NRestarts")
		began := time.Now()
		h.run("kill", "-STOP", h.mainPID())
		waitRestarted(t, h, before)
		t.Logf("a hung agent: node ready again %s after the hang (WatchdogSec=30s)", time.Since(began).Round(time.Millisecond))
		if j := h.journal(); !strings.Contains(j, "Watchdog timeout") || !strings.Contains(j, "status=6/ABRT") {
			t.Fatalf("the journal does not show a watchdog kill by SIGABRT:\n%s", lastLines(j, 30))
		}
		assertNoCore(t, h)
	})
	t.Run("PanicIsRestarted", func(t *testing.T) {
		before := h.prop("NRestarts")
		h.run("systemctl", "kill", "-s", "USR1", "--kill-who=main", "cl-agent")
		waitRestarted(t, h, before)
		if j := h.journal(); !strings.Contains(j, "panic: test hook") {
			t.Fatalf("the journal does not show the panic:\n%s", lastLines(j, 30))
		}
		assertNoCore(t, h)
	})
	t.Run("JournalHasWarnings", func(t *testing.T) {
		// A node killed behind the agent's back is a warning ("node down; starting it again"); with PRIORITY=6 on
		// every line, as before, journalctl -p warning would not show it.
		h.run("docker", "kill", nodeName)
		testenv.WaitFor(t, time.Minute, "the node ready after it was killed", h.nodeReady)
		warnings := h.journal("-p", "warning")
		if !strings.Contains(warnings, `"level":"warn"`) || !strings.Contains(warnings, "node down") {
			t.Fatalf("journalctl -p warning shows no warning of the agent:\n%s", lastLines(warnings, 20))
		}
		if strings.Contains(warnings, `"level":"info"`) {
			t.Fatalf("journalctl -p warning shows info lines: priorities are not set per level:\n%s", lastLines(warnings, 20))
		}
	})
	t.Run("ContainerRebootKeepsOwnerAndStartsTheNode", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := command(ctx, "docker", "restart", h.name); err != nil {
			t.Fatal(err)
		}
		h.waitBooted(ctx)
		testenv.WaitFor(t, 2*time.Minute, "the node ready after a reboot", h.nodeReady)
		assertOwner(t, h, "/var/lib/cl-agent/node", "/var/lib/cl-agent/node/written-by-node")
	})
	t.Run("StopFencesEverything", func(t *testing.T) {
		h.run("systemctl", "stop", "cl-agent")
		if c := h.nodeContainers(); c != "" {
			t.Fatalf("after systemctl stop a node container is left: %s", c)
		}
		// /run always exists (systemd removes the unit's RuntimeDirectory at stop), so find fails only if it cannot
		// look, and a file of the node's anywhere under /run fails the test.
		if files := h.run("find", "/run", "-path", "*cl-agent*", "-type", "f"); files != "" {
			t.Fatalf("after systemctl stop files are left in the secrets directory: %s", files)
		}
	})
	t.Run("DockerRestartLeavesTheAgentRunning", func(t *testing.T) {
		h.run("systemctl", "start", "cl-agent")
		pid := h.mainPID()
		h.run("systemctl", "restart", "docker")
		testenv.WaitFor(t, 2*time.Minute, "the node ready after docker restarted", h.nodeReady)
		if got := h.mainPID(); got != pid {
			t.Fatalf("systemctl restart docker restarted the agent (pid %s -> %s)", pid, got)
		}
	})
}

// TestUnitDoesNotRestartTerminalFailures: a configuration that does not load (exit 2) and a secret that does not
// exist (exit 5) are not restarted, and a fence whose configuration cannot be read still finds the node by its
// label although the configuration gave it another name.
func TestUnitDoesNotRestartTerminalFailures(t *testing.T) {
	t.Parallel() // each test has hosts, a database and secrets of its own
	secrets := createSecrets(t, dbPassword)
	h := startHost(t, hostSpec{instanceID: "i-0a000000000000002", secrets: secrets,
		database: newDatabase(t, dbPassword), containerName: nodeName})
	h.run("systemctl", "start", "cl-agent")
	if !h.nodeReady() {
		t.Fatal("node not ready")
	}
	good := h.run("cat", "/etc/cl-agent/config.yaml")

	t.Run("BadConfigIsNotRestartedAndFenceFindsTheNode", func(t *testing.T) {
		h.run("sh", "-c", "echo 'node: {format: [' > /etc/cl-agent/config.yaml")
		h.run("systemctl", "kill", "-s", "KILL", "--kill-who=main", "cl-agent") // the restart meets the bad config
		testenv.WaitFor(t, time.Minute, "the unit to fail on the bad configuration", func() bool {
			return h.prop("ActiveState") == "failed"
		})
		if got := h.prop("ExecMainStatus"); got != "2" {
			t.Errorf("ExecMainStatus = %s, want 2 (bad configuration)", got)
		}
		if c := h.nodeContainers(); c != "" {
			t.Errorf("the fence without a configuration left the node %q running: %s", nodeName, c)
		}
	})
	t.Run("MissingSecretIsNotRestarted", func(t *testing.T) {
		bad := strings.Replace(good, secrets.api, secrets.api+"-missing", 1)
		h.run("sh", "-c", "cat > /etc/cl-agent/config.yaml <<'EOF'\n"+bad+"\nEOF")
		h.run("systemctl", "reset-failed", "cl-agent")
		if _, err := h.exec(context.Background(), "systemctl", "start", "cl-agent"); err == nil {
			t.Fatal("systemctl start succeeded with a missing secret")
		}
		if got, state := h.prop("ExecMainStatus"), h.prop("ActiveState"); got != "5" || state != "failed" {
			t.Errorf("ExecMainStatus = %s, ActiveState = %s; want 5 and failed (not restarted)", got, state)
		}
		if j := h.journal(); !strings.Contains(j, secrets.api+"-missing") {
			t.Errorf("the journal does not name the missing secret:\n%s", lastLines(j, 10))
		}
	})
}

// waitRestarted waits until systemd has restarted the agent (NRestarts grew) and the node is ready again.
func waitRestarted(t *testing.T, h *host, before string) {
	t.Helper()
	testenv.WaitFor(t, 2*time.Minute, "systemd to restart the agent and the node to be ready", func() bool {
		return h.prop("NRestarts") != before && h.prop("ActiveState") == "active" && h.nodeReady()
	})
}

func assertOwner(t *testing.T, h *host, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if got := h.run("stat", "-c", "%u:%g", p); got != "14933:14933" {
			t.Errorf("%s is owned by %s, want the node's 14933:14933", p, got)
		}
	}
}

// assertNoCore: the agent runs with a zero core limit, and no core file exists anywhere on the host.
func assertNoCore(t *testing.T, h *host) {
	t.Helper()
	if limits := h.run("cat", "/proc/"+h.mainPID()+"/limits"); !strings.Contains(limits, "Max core file size        0                    0") {
		t.Errorf("the agent may dump core:\n%s", limits)
	}
	if cores, _ := h.exec(context.Background(), "sh", "-c", "find / -xdev -type f \\( -name 'core' -o -name 'core.*' \\) -newer /etc/hostname 2>/dev/null"); cores != "" {
		t.Errorf("core files on the host: %s", cores)
	}
}
