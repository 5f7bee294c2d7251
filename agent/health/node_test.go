package health

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// The API password holds characters that need escaping in JSON and URLs, so a leak in any form shows.
const (
	apiEmail    = "ops@example.com"
	apiPassword = `Api-Pass:w"ord/?#%@0123`
	keystorePW  = "Keystore-@:/?#%-0123456"
)

// standinNode is the stand-in Chainlink node running as a process on a loopback port.
type standinNode struct {
	t       *testing.T
	binary  string
	args    []string
	port    int
	rootDir string
	cmd     *exec.Cmd
	out     *logSink
	done    chan struct{}
}

func (n *standinNode) URL() string { return "http://127.0.0.1:" + strconv.Itoa(n.port) }

// startStandin builds the stand-in, gives it a fresh database and starts it; it is stopped at cleanup.
func startStandin(t *testing.T) *standinNode {
	t.Helper()
	ctx := testContext(t, 3*time.Minute)
	bin, err := standin.BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pg := testenv.PostgresT(t)
	dbPassword := "Db-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-0123456789"
	if err := pg.CreateDatabase(ctx, "health_node", "health_node", dbPassword); err != nil {
		t.Fatal(err)
	}
	dbURL := pg.RoleURL("health_node", "health_node", dbPassword)
	secrets, root := t.TempDir(), t.TempDir()
	port := testenv.FreePort(t)
	files := map[string]string{
		"config.toml": fmt.Sprintf("RootDir = %q\n[Log]\nJSONConsole = true\n[WebServer]\nHTTPPort = %d\n"+
			"[Database.Lock]\nEnabled = false\n[[EVM]]\nChainID = '1'\n", root, port),
		"secrets.toml": fmt.Sprintf("[Database]\nURL = %q\n[Password]\nKeystore = %q\n", dbURL, keystorePW),
		".password":    keystorePW + "\n",
		".api":         apiEmail + "\n" + apiPassword + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n := &standinNode{t: t, binary: bin, port: port, rootDir: root, args: []string{"node",
		"-config", secrets + "/config.toml", "-secrets", secrets + "/secrets.toml", "start",
		"-p", secrets + "/.password", "-a", secrets + "/.api"}}
	n.start()
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("stand-in output:\n%s", n.out.String())
		}
	})
	return n
}

func (n *standinNode) start() {
	n.t.Helper()
	n.out, n.done = &logSink{}, make(chan struct{})
	n.cmd = exec.Command(n.binary, n.args...)
	n.cmd.Env = []string{"CL_STANDIN_HOST=health-test"}
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	testenv.WaitFor(n.t, 30*time.Second, "the stand-in to be ready", func() bool {
		res, _ := RunOnce(context.Background(), newNodeReadyz(n.URL(), time.Second, time.Second), nil)
		return res.OK
	})
}

// stop kills the stand-in (its sessions die with it) and waits for it.
func (n *standinNode) stop() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

func (n *standinNode) fault(name, content string) {
	n.t.Helper()
	path := filepath.Join(n.rootDir, name)
	if content == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			n.t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		n.t.Fatal(err)
	}
}

// credentialsBox is the daemon's in-memory API login, counting how often it was read.
type credentialsBox struct {
	mu              sync.Mutex
	email, password string
	reads           int
}

func (c *credentialsBox) get() (string, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.email, c.password, c.email != ""
}

func (c *credentialsBox) readCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

func TestAgainstStandinNode(t *testing.T) {
	t.Parallel()
	node := startStandin(t)
	ctx := testContext(t, 2*time.Minute)
	creds := &credentialsBox{email: apiEmail, password: apiPassword}
	log, sink := newTestLogger()
	api := NewNodeAPI(node.URL(), creds.get)
	run := func(c Check) Result {
		t.Helper()
		res, ok := RunOnce(ctx, c, nil)
		if !ok {
			t.Fatal("the test context ended")
		}
		return res
	}

	t.Run("ReadyzAndHealthPass", func(t *testing.T) {
		if res := run(newNodeReadyz(node.URL(), time.Second, 2*time.Second)); !res.OK {
			t.Errorf("node_readyz: %q", res.Detail)
		}
		if res := run(newNodeHealth(node.URL(), time.Second, 2*time.Second)); !res.OK {
			t.Errorf("node_health: %q", res.Detail)
		}
	})

	t.Run("Health207NamesTheFailingCheck", func(t *testing.T) {
		node.fault("standin-health-fail", "EVM.1")
		defer node.fault("standin-health-fail", "")
		res := run(newNodeHealth(node.URL(), time.Second, 2*time.Second))
		if res.OK || !strings.Contains(res.Detail, "207") || !strings.Contains(res.Detail, "EVM.1") {
			t.Errorf("node_health with EVM.1 failing: ok=%v %q; want a 207 failure naming EVM.1", res.OK, res.Detail)
		}
		if strings.Contains(res.Detail, "Database") {
			t.Errorf("node_health names a passing check as failing: %q", res.Detail)
		}
	})

	t.Run("WalletBalancesWithLowBalanceWarning", func(t *testing.T) {
		node.fault("standin-balances", "0x00000000000000000000000000000000000000a1 2.5\n"+
			"0x00000000000000000000000000000000000000b2 0.05\n")
		defer node.fault("standin-balances", "")
		wallet := WalletBalances(api, 0.1, time.Second, 2*time.Second, log)
		res := run(wallet)
		if res.OK || !strings.Contains(res.Detail, "0x00000000000000000000000000000000000000b2 has 0.05 ETH") {
			t.Errorf("node_wallet_balance: ok=%v %q; want a failure naming the low key", res.OK, res.Detail)
		}
		if v, _ := sampleValue(res, metricWalletLow, ""); v != 1 {
			t.Errorf("wallet low sample = %v; want 1", v)
		}
		if v, _ := sampleValue(res, metricWalletBalance, "0x00000000000000000000000000000000000000a1"); v != 2.5 {
			t.Errorf("balance of a1 = %v; want 2.5", v)
		}
		run(wallet) // still low: no second warning
		if n := strings.Count(sink.String(), "wallet balance low"); n != 1 {
			t.Errorf("%d low-balance warnings for one key that stayed low; want 1:\n%s", n, sink.String())
		}
		if !strings.Contains(sink.String(), `"address":"0x00000000000000000000000000000000000000b2"`) {
			t.Errorf("the warning does not name the address:\n%s", sink.String())
		}
		node.fault("standin-balances", "0x00000000000000000000000000000000000000b2 1.0\n")
		res = run(wallet)
		if !res.OK {
			t.Errorf("after funding: %q", res.Detail)
		}
		if v, _ := sampleValue(res, metricWalletLow, ""); v != 0 {
			t.Errorf("wallet low sample after funding = %v; want 0", v)
		}
	})

	t.Run("ErroredRuns", func(t *testing.T) {
		runs := newErroredRuns(api, 100, time.Second, 2*time.Second)
		if res := run(runs); !res.OK {
			t.Errorf("node_errored_runs without errors: %q", res.Detail)
		}
		node.fault("standin-errored-runs", "3")
		defer node.fault("standin-errored-runs", "")
		res := run(runs)
		if res.OK || !strings.Contains(res.Detail, "3 of the newest 8 runs errored") {
			t.Errorf("node_errored_runs: ok=%v %q; want 3 of 8 errored", res.OK, res.Detail)
		}
		if v, _ := sampleValue(res, metricErroredRuns, ""); v != 3 {
			t.Errorf("errored runs sample = %v; want 3", v)
		}
	})

	t.Run("WrongCredentialsFailWithoutThePassword", func(t *testing.T) {
		wrong := &credentialsBox{email: apiEmail, password: "Not-The-Password-0123456"}
		res := run(newErroredRuns(NewNodeAPI(node.URL(), wrong.get), 10, time.Second, 2*time.Second))
		if res.OK || !strings.Contains(res.Detail, "refused the API credentials (401)") {
			t.Errorf("with a wrong password: ok=%v %q; want the 401 named", res.OK, res.Detail)
		}
		if strings.Contains(res.Detail, "Not-The-Password") {
			t.Errorf("the detail holds the password: %q", res.Detail)
		}
		none := &credentialsBox{}
		res = run(newErroredRuns(NewNodeAPI(node.URL(), none.get), 10, time.Second, 2*time.Second))
		if res.OK || !strings.Contains(res.Detail, errNoCredentials.Error()) {
			t.Errorf("without credentials: ok=%v %q", res.OK, res.Detail)
		}
	})

	t.Run("LogsInAgainAfterTheNodeRestarts", func(t *testing.T) {
		runs := newErroredRuns(api, 10, time.Second, 2*time.Second)
		if res := run(runs); !res.OK {
			t.Fatalf("before the restart: %q", res.Detail)
		}
		reads := creds.readCount()
		if res := run(runs); !res.OK || creds.readCount() != reads {
			t.Fatalf("a second run logged in again (%d credential reads, was %d) or failed: %q", creds.readCount(), reads, res.Detail)
		}
		node.stop() // the node's sessions die with it: the cookie is now unknown (401)
		node.start()
		if res := run(runs); !res.OK {
			t.Errorf("after the restart: %q; want a fresh login", res.Detail)
		}
		if creds.readCount() != reads+1 {
			t.Errorf("credential reads %d → %d; want exactly one new login", reads, creds.readCount())
		}
	})
}

func TestServiceAgainstStandinKeepsSecretsOut(t *testing.T) {
	t.Parallel()
	node := startStandin(t)
	node.fault("standin-balances", "0x00000000000000000000000000000000000000c3 0.01\n")
	node.fault("standin-health-fail", "EVM.1")
	creds := &credentialsBox{email: apiEmail, password: apiPassword}
	box := &stateBox{st: AgentState{Role: state.Active, LockEnabled: true, LockHeld: true, NodeUp: true, NodeReady: true, LastBeat: time.Now()}}
	log, sink := newTestLogger()
	svc, base := startService(t, Options{State: box.get, Log: log, NodeURL: node.URL(), Credentials: creds.get,
		MinBalanceETH: 0.1, CheckInterval: 100 * time.Millisecond, APIInterval: 100 * time.Millisecond})
	for _, name := range []string{"node_readyz", "node_health", "node_wallet_balance", "node_errored_runs", "host"} {
		waitResult(t, svc.runner, name, time.Time{}, 10*time.Second, func(Result) bool { return true })
	}
	_, metrics := probe(t, base+"/metrics", 5*time.Second)
	for _, want := range []string{
		`cl_agent_wallet_balance_eth{address="0x00000000000000000000000000000000000000c3"} 0.01`,
		"cl_agent_wallet_balance_low 1", `cl_agent_check_ok{check="node_health"} 0`,
		`cl_agent_check_ok{check="node_readyz"} 1`, "cl_agent_errored_runs 0",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// On stepping down the node checks are skipped and their figures go.
	box.set(func(s *AgentState) { s.Role, s.NodeReady = "standby", false })
	waitResult(t, svc.runner, "node_wallet_balance", time.Now(), 5*time.Second, func(r Result) bool { return r.Skipped })
	_, standby := probe(t, base+"/metrics", 5*time.Second)
	if strings.Contains(standby, "cl_agent_wallet_balance_eth{") {
		t.Error("the standby still exports the wallet balances of a node it no longer runs")
	}

	logs := sink.String()
	if !strings.Contains(logs, "wallet balance low") || !strings.Contains(logs, `"check":"node_health"`) {
		t.Errorf("missing the low-balance warning or the failing check in the log:\n%s", logs)
	}
	for _, form := range secretForms(apiPassword) {
		for where, text := range map[string]string{"log": logs, "/metrics": metrics + standby, "results": fmt.Sprint(svc.Results())} {
			if strings.Contains(text, form) {
				t.Errorf("the %s holds the API password (as %q)", where, form)
			}
		}
	}
}

// secretForms are the spellings of a secret that could show up: raw, JSON-escaped, URL-escaped.
func secretForms(s string) []string {
	return []string{s, strings.ReplaceAll(s, `"`, `\"`), url.QueryEscape(s), url.PathEscape(s)}
}
