package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
)

func newTestServer(t *testing.T) (*httptest.Server, *nodeState, string) {
	t.Helper()
	dir := t.TempDir()
	state := newNodeState()
	cfg := defaultConfig(gen2)
	cfg.RootDir = dir
	creds := apiCredentials{Email: goodEmail, Password: goodPW}
	srv := httptest.NewServer(newServer(state, cfg, creds, &memUsers{email: goodEmail, password: goodPW}, zap.NewNop()).handler())
	t.Cleanup(srv.Close)
	return srv, state, dir
}

// memUsers is the one API user in memory (the node keeps it in its database: users.go, tested in Docker).
type memUsers struct {
	mu              sync.Mutex
	email, password string
}

func (m *memUsers) check(_ context.Context, email, password string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.EqualFold(strings.TrimSpace(email), m.email) && password == m.password, nil
}

func (m *memUsers) change(ctx context.Context, email, old, new string) (bool, error) {
	if ok, _ := m.check(ctx, email, old); !ok {
		return false, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.password = new
	return true, nil
}

func TestProbes(t *testing.T) {
	t.Parallel()
	srv, state, dir := newTestServer(t)
	if code, _ := get(t, srv.Client(), srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d; want 503", code)
	}
	state.lockHeld.Store(true)
	state.ready.Store(true)
	if code, _ := get(t, srv.Client(), srv.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d; want 200", code)
	}
	code, body := get(t, srv.Client(), srv.URL+"/health")
	if code != http.StatusOK || checkStatus(t, body, "DatabaseLock") != "passing" || checkStatus(t, body, "EVM.1") != "passing" {
		t.Errorf("/health = %d %s; want 200 with passing checks", code, body)
	}
	writeFile(t, filepath.Join(dir, faultHealthFail), "EVM.1\n")
	code, body = get(t, srv.Client(), srv.URL+"/health")
	if code != http.StatusMultiStatus || checkStatus(t, body, "EVM.1") != "failing" || checkStatus(t, body, "Database") != "passing" {
		t.Errorf("/health with EVM.1 failing = %d %s; want 207 with EVM.1 failing", code, body)
	}
	writeFile(t, filepath.Join(dir, faultHealthFail), "Mailbox")
	code, body = get(t, srv.Client(), srv.URL+"/health")
	if code != http.StatusMultiStatus || checkStatus(t, body, "Mailbox") != "failing" {
		t.Errorf("/health with an unknown check failing = %d %s; want 207", code, body)
	}
	if err := os.Remove(filepath.Join(dir, faultHealthFail)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, faultHealthFail), 0o700); err != nil { // unreadable as a file
		t.Fatal(err)
	}
	code, body = get(t, srv.Client(), srv.URL+"/health")
	if code != http.StatusMultiStatus || checkStatus(t, body, faultHealthFail) != "failing" {
		t.Errorf("/health with an unreadable %s = %d %s; want 207", faultHealthFail, code, body)
	}
	state.refreshFailed()
	if _, body = get(t, srv.Client(), srv.URL+"/health"); checkStatus(t, body, "Database") != "failing" {
		t.Errorf("/health after a failed refresh: %s; want Database failing", body)
	}
	code, body = get(t, srv.Client(), srv.URL+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "standin_lock_held 1") || !strings.Contains(body, "standin_lock_refresh_errors_total 1") {
		t.Errorf("/metrics = %d; want the stand-in gauges:\n%s", code, body)
	}
}

func TestNodeAPI(t *testing.T) {
	t.Parallel()
	srv, _, dir := newTestServer(t)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := srv.Client()
	c.Jar = jar
	for _, path := range []string{"/v2/keys/eth", "/v2/pipeline/runs?size=5"} {
		if code, _ := get(t, c, srv.URL+path); code != http.StatusUnauthorized {
			t.Errorf("%s without a session = %d; want 401", path, code)
		}
	}
	if code := login(t, c, srv.URL, goodEmail, goodPW+"x"); code != http.StatusUnauthorized {
		t.Errorf("login with a wrong password = %d; want 401", code)
	}
	if code := login(t, c, srv.URL, strings.ToUpper(goodEmail), goodPW); code != http.StatusOK {
		t.Fatalf("login = %d; want 200", code)
	}

	var keys struct {
		Data []struct {
			Type       string
			ID         string
			Attributes struct {
				Address, EthBalance, LinkBalance, EvmChainID string
			}
		}
	}
	_, body := get(t, c, srv.URL+"/v2/keys/eth")
	decode(t, body, &keys)
	if len(keys.Data) != 1 || keys.Data[0].Type != "eTHKeys" || keys.Data[0].Attributes.EthBalance != "1000000000000000000" ||
		keys.Data[0].Attributes.EvmChainID != "1" || keys.Data[0].ID != keys.Data[0].Attributes.Address {
		t.Errorf("default keys = %s", body)
	}
	writeFile(t, filepath.Join(dir, fileBalances), "# address balance\n0xaaaa000000000000000000000000000000000001 0.05\n0xbbbb000000000000000000000000000000000002 12\n")
	_, body = get(t, c, srv.URL+"/v2/keys/eth")
	decode(t, body, &keys)
	if len(keys.Data) != 2 || keys.Data[0].Attributes.EthBalance != "50000000000000000" || keys.Data[1].Attributes.EthBalance != "12000000000000000000" {
		t.Errorf("keys from standin-balances = %s", body)
	}

	var runs struct {
		Data []struct {
			Attributes struct {
				State       string
				FatalErrors []*string
			}
		}
		Meta struct{ Count int }
	}
	_, body = get(t, c, srv.URL+"/v2/pipeline/runs?size=3")
	decode(t, body, &runs)
	if len(runs.Data) != 3 || runs.Data[0].Attributes.State != "completed" {
		t.Errorf("runs without errors = %s", body)
	}
	writeFile(t, filepath.Join(dir, fileErroredRuns), "2\n")
	_, body = get(t, c, srv.URL+"/v2/pipeline/runs?size=10")
	decode(t, body, &runs)
	errored := 0
	for _, r := range runs.Data {
		if r.Attributes.State == "errored" && len(r.Attributes.FatalErrors) == 1 && r.Attributes.FatalErrors[0] != nil {
			errored++
		}
	}
	if errored != 2 || runs.Meta.Count != 2+completedRuns || len(runs.Data) != 2+completedRuns {
		t.Errorf("runs with standin-errored-runs=2: %d errored of %d; body %s", errored, len(runs.Data), body)
	}
}

func TestRunCommandLine(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"admin", "login"}, mapEnv(nil), &stdout, &stderr)
	if exitCode(err) != 2 || !strings.Contains(stderr.String(), "usage:") {
		t.Errorf("unknown command: exit %d, stderr %q; want 2 with usage", exitCode(err), stderr.String())
	}
	stdout.Reset()
	err = run(context.Background(), []string{"--version"}, mapEnv(map[string]string{"CL_STANDIN_VERSION": "2.10.0"}), &stdout, &stderr)
	if err != nil || stdout.String() != "chainlink version 2.10.0@standin\n" {
		t.Errorf("--version: %v %q", err, stdout.String())
	}
}

// TestRunRefusesWithoutLeakingSecrets runs the whole program on bad inputs: exit 1, one JSON line naming the
// file and the rule, and no secret anywhere in the output.
func TestRunRefusesWithoutLeakingSecrets(t *testing.T) {
	t.Parallel()
	dbSecret := "Db-Secret-Value-0123456789"
	tests := []struct {
		name, config, secrets, password, api string
		wantFile, wantText                   string
	}{
		{"KeystoreEdgeWhiteSpaceInSecrets", "", "[Database]\nURL = 'postgres://u:" + dbSecret + "@db/x'\n[Password]\nKeystore = 'Ks-9-padded-0123456 '\n",
			goodPW, goodEmail + "\n" + goodPW, "secrets.toml", "white space"},
		{"SecretsSyntaxError", "", "[Database]\nURL = 'postgres://u:" + dbSecret + "@db/x\n",
			goodPW, goodEmail + "\n" + goodPW, "secrets.toml", "not valid TOML"},
		{"WrongTypeInConfig", "[Database.Lock]\nLeaseDuration = 10\n", "[Database]\nURL = 'postgres://u:" + dbSecret + "@db/x'\n[Password]\nKeystore = '" + goodPW + "'\n",
			goodPW, goodEmail + "\n" + goodPW, "config.toml", "wrong type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"config.toml": tt.config, "secrets.toml": tt.secrets, ".password": tt.password, ".api": tt.api}
			for name, content := range files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			var stdout, stderr bytes.Buffer
			args := []string{"node", "-config", filepath.Join(dir, "config.toml"), "-secrets", filepath.Join(dir, "secrets.toml"),
				"start", "-p", filepath.Join(dir, ".password"), "-a", filepath.Join(dir, ".api")}
			err := run(context.Background(), args, mapEnv(nil), &stdout, &stderr)
			if exitCode(err) != 1 {
				t.Fatalf("exit %d; want 1", exitCode(err))
			}
			var line struct{ Level, Msg, Error string }
			decode(t, strings.TrimSpace(stdout.String()), &line)
			if line.Msg != evRefusing || !strings.Contains(line.Error, tt.wantFile) || !strings.Contains(line.Error, tt.wantText) {
				t.Errorf("log line %q; want %q naming %s and %q", stdout.String(), evRefusing, tt.wantFile, tt.wantText)
			}
			for _, secret := range []string{dbSecret, goodPW, "Ks-9-padded"} {
				if strings.Contains(stdout.String()+stderr.String(), secret) {
					t.Errorf("output quotes a secret: %s", stdout.String())
				}
			}
		})
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func login(t *testing.T, c *http.Client, base, email, password string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	resp, err := c.Post(base+"/sessions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func checkStatus(t *testing.T, body, name string) string {
	t.Helper()
	var doc struct {
		Data []struct {
			ID         string
			Attributes struct{ Name, Status string }
		}
	}
	decode(t, body, &doc)
	for _, d := range doc.Data {
		if d.ID == name && d.Attributes.Name == name {
			return d.Attributes.Status
		}
	}
	return ""
}

func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}
