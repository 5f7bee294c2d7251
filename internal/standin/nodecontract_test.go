package standin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/keyring"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// The parts of the real node's contract that test/realnode's TestStandinHonoursTheNodeContract compares in Docker,
// checked here on the stand-in as a process: how its sessions are named, its key ring, its chain client.

// TestSessionsAndKeyRingAsTheNode: every session is "Chainlink <version> |App|<uuid>" with the lease's client id
// (the URL's application_name replaced); the key ring is sealed with the first keystore password, agent/keyring
// reads it as the node's, and another password stops the node with exit 1 and the node's words, the ring unchanged.
func TestSessionsAndKeyRingAsTheNode(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	db := newDatabase(t, pg)
	port := testenv.FreePort(t)
	dbURL := db.url("127.0.0.1", pg.CAFile) + "&application_name=chainlink%2Fi-test" // as the agent renders it
	f := tomlFiles(t, dbURL, "", port, 10*time.Second, time.Second)
	env := []string{"CL_STANDIN_VERSION=2.19.0"}
	n := startNode(t, "keyring", port, env, args2x(f.Secrets)...)
	n.waitLog(t, "ready", 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := db.superuser(t)
	rows, err := conn.Query(ctx, `SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND usename = $2`,
		db.name, db.user)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) == 0 {
		t.Fatalf("the node's sessions: %v %v", names, err)
	}
	var holder string
	if err := conn.QueryRow(ctx, `SELECT client_id::text FROM lease_lock`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^Chainlink 2\.19\.0 \|App\|` + regexp.QuoteMeta(holder) + `$`)
	for _, name := range names {
		if !want.MatchString(name) {
			t.Errorf("session application_name %q; want %s", name, want)
		}
	}

	other := "Another-Keystore-@:/?#%-0123"
	for _, c := range []struct {
		password string
		want     keyring.Verdict
	}{{keystorePW, keyring.Opens}, {other, keyring.DoesNotOpen}} {
		if got, err := keyring.Check(ctx, conn, c.password); err != nil || got != c.want {
			t.Errorf("keyring.Check on the stand-in's ring = %s, %v; want %s", got, err, c.want)
		}
	}
	n.signal(t, syscall.SIGTERM)
	if code := n.exitCode(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d", code)
	}

	setKeystore(t, f, other)
	refused := startNode(t, "keyring-other", port, env, args2x(f.Secrets)...)
	if code := refused.exitCode(t, 30*time.Second); code != 1 {
		t.Errorf("with another keystore password: exit %d; want 1", code)
	}
	line := findLog(refused.out.String(), "error authenticating keystore")
	if msg, _ := line["error"].(string); !strings.Contains(msg, "could not decrypt key with given password") {
		t.Errorf("refusal %v; want the node's words:\n%s", line, refused.out.String())
	}
	if strings.Contains(refused.out.String(), other) {
		t.Error("the log holds the keystore password")
	}
	if got, err := keyring.Check(ctx, conn, keystorePW); err != nil || got != keyring.Opens {
		t.Errorf("after the refused start the ring opens with %s, %v; want the first password still", got, err)
	}

	setKeystore(t, f, keystorePW)
	again := startNode(t, "keyring-again", port, env, args2x(f.Secrets)...)
	again.waitLog(t, "ready", 30*time.Second)
}

// TestModelledChainClient: with standin-dial-chain the chain client's check fails while its WebSocket cannot be
// opened and balances are null, as on the real node; once a chain client answers, both are back. Without the file
// an unreachable chain still counts as connected (what the HA tests' nodes need).
func TestModelledChainClient(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	chain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, _, _ = c.Read(r.Context()) // hold it until the client goes
	}))
	t.Cleanup(chain.Close)
	closed := "ws://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))

	for _, tc := range []struct {
		name       string
		dial       bool
		wsURL      string
		wantHealth int
		wantOutput string // of the failing HeadListener
		wantWei    any    // ethBalance
	}{
		{"UnreachableChainFailsTheListener", true, closed, http.StatusMultiStatus, "Listener is not connected", nil},
		{"ReachableChainPasses", true, "ws" + strings.TrimPrefix(chain.URL, "http"), http.StatusOK, "",
			"1000000000000000000"},
		{"UnmodelledChainCountsAsConnected", false, closed, http.StatusOK, "", "1000000000000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := testenv.FreePort(t)
			f := tomlFiles(t, newDatabase(t, pg).url("127.0.0.1", pg.CAFile), "", port, 10*time.Second, time.Second)
			appendFile(t, f.path("config.toml"),
				fmt.Sprintf("[[EVM]]\nChainID = '1'\n[[EVM.Nodes]]\nName = 'primary'\nWSURL = %q\n", tc.wsURL))
			if tc.dial {
				write(t, filepath.Join(f.Data, "standin-dial-chain"), "")
			}
			n := startNode(t, "chain", port, nil, args2x(f.Secrets)...)
			n.waitLog(t, "ready", 30*time.Second)
			base := "http://127.0.0.1:" + strconv.Itoa(port)
			var code int
			var output string
			ok := testenv.Poll(20*time.Second, 50*time.Millisecond, func() bool {
				code, output = headListener(t, base)
				return code == tc.wantHealth && output == tc.wantOutput
			})
			if !ok {
				t.Errorf("/health %d, HeadListener output %q; want %d, %q", code, output, tc.wantHealth, tc.wantOutput)
			}
			if got := ethBalance(t, base); got != tc.wantWei {
				t.Errorf("ethBalance = %#v; want %#v", got, tc.wantWei)
			}
		})
	}
}

// headListener reads /health: its status and the output of the EVM.1.HeadTracker.HeadListener check.
func headListener(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Data []struct {
			Attributes struct{ Name, Status, Output string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, d := range doc.Data {
		if d.Attributes.Name == "EVM.1.HeadTracker.HeadListener" {
			return resp.StatusCode, d.Attributes.Output
		}
	}
	t.Fatalf("/health has no EVM.1.HeadTracker.HeadListener check: %+v", doc)
	return 0, ""
}

// ethBalance logs in with the .api credentials and returns the first key's ethBalance as JSON decoded it.
func ethBalance(t *testing.T, base string) any {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	body, _ := json.Marshal(map[string]string{"email": apiEmail, "password": apiPassword})
	resp, err := c.Post(base+"/sessions", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /sessions: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get(base + "/v2/keys/eth")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var keys struct {
		Data []struct{ Attributes map[string]any }
	}
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil || len(keys.Data) == 0 {
		t.Fatalf("/v2/keys/eth: %+v %v", keys, err)
	}
	return keys.Data[0].Attributes["ethBalance"]
}

// setKeystore gives the node another keystore password, in secrets.toml and .password alike.
func setKeystore(t *testing.T, f nodeFiles, password string) {
	t.Helper()
	raw, err := os.ReadFile(f.path("secrets.toml"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := regexp.MustCompile(`(?m)^Keystore = .*$`).
		ReplaceAllLiteralString(string(raw), "Keystore = "+strconv.Quote(password))
	write(t, f.path("secrets.toml"), secrets)
	write(t, f.path(".password"), password+"\n")
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	file, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
}
