package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/internal/chainsim"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// notifySocket listens where systemd would and collects what the daemon tells it.
type notifySocket struct {
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) saw(prefix string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, prefix) {
				return true
			}
		}
	}
	return false
}

// syncBuffer is the daemon's output: written by its logger, read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunAlwaysActive runs `cl-agent run` with leader.enabled false on the real components: the node image
// resolved from a registry and pulled by digest, secrets from moto, identity from the IMDS mock, the stand-in node
// on PostgreSQL, a chain client stand-in, and systemd's notify socket. It rotates a secret, restarts the node
// through the control socket, and stops the daemon as systemd would.
func TestRunAlwaysActive(t *testing.T) {
	repo := pushStandin(t, "2.9.1", "2.10.0")
	chain := chainsim.StartT(t, chainsim.Options{ChainID: 11155111, Head: 100})
	notify := listenNotify(t)
	port, healthPort := testenv.FreePort(t), testenv.FreePort(t)
	dir := t.TempDir()
	socket := filepath.Join(dir, "control.sock")
	secretsDir := filepath.Join(dir, "secrets")
	cfg := writeConfig(t, "auto",
		"image: {repository: "+repo+"}",
		"  ws_url: "+chain.WSURL,
		"  http_url: "+chain.URL,
		fmt.Sprintf("container: {name: cl-agent-runtest-%d, host_port: %d, data_dir: %s, secrets_dir: %s, stop_timeout: 5s, log: {driver: json-file, group: x}}",
			time.Now().UnixNano(), port, filepath.Join(dir, "data"), secretsDir),
		"leader: {enabled: false}",
		fmt.Sprintf("health: {listen: '127.0.0.1:%d', check_interval: 1s, check_timeout: 1s, cloudwatch: {enabled: false}}", healthPort),
		"control: {socket: "+socket+"}",
		"state_dir: "+filepath.Join(dir, "state"),
	)
	// Rotation checks every 10s, the shortest allowed.
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte("  keystore_password: {id: WalletSecret}\n"), []byte("  keystore_password: {id: WalletSecret}\n  poll_interval: 10s\n"), 1)
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	forgetPair(t)
	go func() { done <- run(ctx, []string{"run", "--config", cfg}, &out, &errOut) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		if t.Failed() {
			t.Logf("agent output:\n%s\n%s", out.String(), errOut.String())
		}
	})

	client := control.NewClient(socket)
	status := func() control.Status {
		s, _ := client.Status(context.Background())
		return s
	}
	testenv.WaitFor(t, 90*time.Second, "node ready and READY=1 sent", func() bool {
		return status().Node.Ready && notify.saw("READY=1")
	})
	s := status()
	if s.Role != "active" || !strings.Contains(s.Node.Image, repo+":2.10.0@sha256:") || s.Lock.Enabled {
		t.Errorf("status = %+v", s)
	}
	// WATCHDOG=1 comes with the loop's next tick (1s), which may follow READY=1.
	testenv.WaitFor(t, 5*time.Second, "systemd told STATUS=active and WATCHDOG=1", func() bool {
		return notify.saw("STATUS=active") && notify.saw("WATCHDOG=1")
	})
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)); err != nil || resp.StatusCode != 200 {
		t.Errorf("agent /readyz: %v %v", resp, err)
	}
	if entries, _ := os.ReadDir(secretsDir); len(entries) != 0 {
		t.Errorf("secret files left after the node is ready: %v", entries)
	}
	// The warm-up had the node's own validate (the stand-in image's) judge the files before the first start.
	if !strings.Contains(out.String(), "the node's own validate accepts the rendered files") {
		t.Errorf("the warm-up did not run the node's validate")
	}

	// A rotated API password is carried over to the node's user (PATCH /v2/user/password: the node ignores .api
	// once its user exists), without a restart: the new password logs in, the old one no longer does.
	newPass := "api-Rotated-Password-987654"
	sm := secretsmanager.New(secretsmanager.Options{Region: "us-east-1", BaseEndpoint: aws.String(fx.moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	if _, err := sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: aws.String("ApiSecret"), SecretString: aws.String(newPass)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the other tests expect the fixture's value
		_, _ = sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: aws.String("ApiSecret"), SecretString: aws.String(apiPass)})
	})
	login := func(pw string) int {
		body := fmt.Sprintf(`{"email":%q,"password":%q}`, apiEmail, pw)
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/sessions", port), "application/json", strings.NewReader(body))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testenv.WaitFor(t, 60*time.Second, "the node's user moved to the rotated API password", func() bool { return login(newPass) == 200 })
	if got := login(apiPass); got == 200 {
		t.Errorf("the old password still logs in after the rotation")
	}
	if s := status(); s.Node.Restarts != 0 || !s.Node.Ready || s.LastError != "" {
		t.Errorf("after the API password rotation: %+v, problem %q; want the node ready, not restarted, no problem", s.Node, s.LastError)
	}

	// cl-agent restart through the control socket.
	before := status().Node.Restarts
	if code, stdout, stderr := cli(t, "restart", "--config", cfg); code != 0 || !strings.Contains(stdout, "restarted") {
		t.Fatalf("restart: exit %d %s %s", code, stdout, stderr)
	}
	if after := status(); after.Node.Restarts != before+1 || !after.Node.Ready {
		t.Errorf("after restart: %+v (restarts before %d)", after.Node, before)
	}
	if code, stdout, _ := cli(t, "status", "--config", cfg); code != 0 || !strings.Contains(stdout, "role:      active") || !strings.Contains(stdout, "chain_http") {
		t.Errorf("status: exit %d\n%s", code, stdout)
	}

	// SIGTERM: the node is stopped within its bound and the daemon exits 0.
	container := s.Node.Container
	stopped := time.Now()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after SIGTERM", err)
		}
		done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of SIGTERM")
	}
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("stopping took %s, more than stop_timeout (5s) + 5s", took)
	}
	if err := exec.Command("docker", "inspect", container).Run(); err == nil {
		t.Error("the node container is still there after the daemon stopped")
	}
	if !notify.saw("STOPPING=1") {
		t.Error("systemd was not told STOPPING=1")
	}
	for _, text := range []string{out.String(), errOut.String()} {
		assertNoSecret(t, "agent output", text)
		if strings.Contains(text, newPass) {
			t.Error("the rotated password appears in the agent's output")
		}
	}
}

// TestRunEndsOnWhatTheNodeRefuses: an extra_toml value that passes the agent's own checks but not the node's (a log
// level the node does not know) ends `cl-agent run` at warm-up with exit 2 and the node's own reason, before the
// agent starts a node; the files it judged are shredded.
func TestRunEndsOnWhatTheNodeRefuses(t *testing.T) {
	repo := pushStandin(t, "2.10.0")
	dir := t.TempDir()
	secretsDir := filepath.Join(dir, "secrets")
	name := fmt.Sprintf("cl-agent-runrefused-%d", time.Now().UnixNano())
	cfg := writeConfig(t, "auto",
		"image: {repository: "+repo+"}",
		fmt.Sprintf("container: {name: %s, host_port: %d, data_dir: %s, secrets_dir: %s, log: {driver: json-file, group: x}}",
			name, testenv.FreePort(t), filepath.Join(dir, "data"), secretsDir),
		"leader: {enabled: false}",
		fmt.Sprintf("health: {listen: '127.0.0.1:%d', cloudwatch: {enabled: false}}", testenv.FreePort(t)),
		"control: {socket: "+filepath.Join(dir, "control.sock")+"}",
		"state_dir: "+filepath.Join(dir, "state"),
	)
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte("  api_email: "), []byte("  extra_toml: \"[Log]\\nLevel = 'loud'\\n\"\n  api_email: "), 1)
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut syncBuffer
	forgetPair(t)
	err = run(ctx, []string{"run", "--config", cfg}, &out, &errOut)
	if code := exitcode.Of(err); code != exitcode.Config || !strings.Contains(err.Error(), "Invalid configuration") ||
		!strings.Contains(err.Error(), "Log.Level") {
		t.Fatalf("run ended with exit %d: %v; want exit 2 with the node's reason naming Log.Level\n%s", code, err, out.String())
	}
	t.Logf("run ended: %v", err)
	if _, ierr := exec.CommandContext(ctx, "docker", "container", "inspect", name).CombinedOutput(); ierr == nil {
		t.Errorf("a node container %s was created for a configuration the node refuses", name)
	}
	if entries, _ := os.ReadDir(secretsDir); len(entries) != 0 {
		t.Errorf("files left in secrets_dir after the refusal: %v", entries)
	}
}
