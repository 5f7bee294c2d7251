package standin

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestRefusesToStart: a missing or malformed input ends the process with exit 1 and one log line naming the
// input and the rule, before any database work, and never quoting a secret.
func TestRefusesToStart(t *testing.T) {
	t.Parallel()
	const dbPassword = "Never-Logged-@:/?#%-Password"
	dbURL := "postgres://cl_node:" + strings.NewReplacer("@", "%40", ":", "%3A", "/", "%2F", "?", "%3F", "#", "%23", "%", "%25").Replace(dbPassword) + "@127.0.0.1:1/chainlink"
	tests := []struct {
		name   string
		edit   func(t *testing.T, f nodeFiles)
		args   func(f nodeFiles) []string
		code   int
		naming []string // substrings of the refusal's error
	}{
		{"MissingKeystorePasswordFile", func(t *testing.T, f nodeFiles) { remove(t, f.path(".password")) }, nil, 1,
			[]string{".password", "no such file"}},
		{"MissingAPIFile", func(t *testing.T, f nodeFiles) { remove(t, f.path(".api")) }, nil, 1,
			[]string{".api", "no such file"}},
		// A short API password is the node's refusal only when .api creates the first user (a database matter:
		// cmd/chainlink's TestAPIPasswordRulesOnlyForTheFirstUser); an empty one is refused on reading.
		{"EmptyAPIPassword", func(t *testing.T, f nodeFiles) { write(t, f.path(".api"), apiEmail+"\n\n") }, nil, 1,
			[]string{".api", "line 2", "empty"}},
		{"KeystorePasswordWithTrailingSpace", func(t *testing.T, f nodeFiles) { write(t, f.path(".password"), keystorePW+" \n") }, nil, 1,
			[]string{".password", "white space"}},
		{"ConfigNotTOML", func(t *testing.T, f nodeFiles) { write(t, f.path("config.toml"), "[WebServer\nHTTPPort = 1\n") }, nil, 1,
			[]string{"config.toml", "not valid TOML"}},
		{"ConfigWrongType", func(t *testing.T, f nodeFiles) { write(t, f.path("config.toml"), "[WebServer]\nHTTPPort = 'http'\n") }, nil, 1,
			[]string{"config.toml", "WebServer.HTTPPort", "wrong type"}},
		{"SecretsWithoutKeystore", func(t *testing.T, f nodeFiles) {
			write(t, f.path("secrets.toml"), "[Database]\nURL = '"+dbURL+"'\n")
		}, nil, 1, []string{"secrets.toml", "Password.Keystore", "required"}},
		{"UnencodedDatabasePassword", func(t *testing.T, f nodeFiles) {
			write(t, f.path("secrets.toml"), "[Database]\nURL = 'postgres://cl_node:"+dbPassword+"@127.0.0.1:1/chainlink'\n[Password]\nKeystore = '"+keystorePW+"'\n")
		}, nil, 1, []string{"secrets.toml", "Database.URL", "percent-encoded"}},
		{"RootDirMissing", func(t *testing.T, f nodeFiles) { remove(t, f.Data) }, nil, 1,
			[]string{"RootDir", "does not exist"}},
		{"LegacyEnvironmentFor2x", nil, nil, 1, []string{"DATABASE_URL", "CL_DATABASE_URL"}},
		{"UnknownCommand", nil, func(nodeFiles) []string { return []string{"node", "run"} }, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := tomlFiles(t, dbURL, "", testenv.FreePort(t), 10*time.Second, time.Second)
			if tt.edit != nil {
				tt.edit(t, f)
			}
			args := args2x(f.Secrets)
			if tt.args != nil {
				args = tt.args(f)
			}
			var env []string
			if tt.name == "LegacyEnvironmentFor2x" {
				env = []string{"DATABASE_URL=" + dbURL}
			}
			n := startNode(t, "refuse", 0, env, args...)
			if code := n.exitCode(t, 10*time.Second); code != tt.code {
				t.Fatalf("exit code = %d; want %d", code, tt.code)
			}
			out := n.out.String()
			for _, secret := range []string{dbPassword, keystorePW, apiPassword} {
				if strings.Contains(out, secret) {
					t.Errorf("output quotes a secret:\n%s", out)
				}
			}
			if tt.code == 2 {
				if !strings.Contains(out, "usage:") {
					t.Errorf("no usage in output:\n%s", out)
				}
				return
			}
			line := n.out.find("refusing to start")
			if line == nil {
				t.Fatalf("no \"refusing to start\" line:\n%s", out)
			}
			msg, _ := line["error"].(string)
			for _, s := range tt.naming {
				if !strings.Contains(msg, s) {
					t.Errorf("refusal %q does not mention %q", msg, s)
				}
			}
		})
	}
}

// TestFaultInjection drives the RootDir fault files against a real database.
func TestFaultInjection(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	start := func(t *testing.T, db database, faults map[string]string) (*node, nodeFiles) {
		port := testenv.FreePort(t)
		f := tomlFiles(t, db.url("127.0.0.1", pg.CAFile), "", port, 30*time.Second, 200*time.Millisecond)
		writeFiles(t, f.Data, faults)
		return startNode(t, "faulty", port, nil, args2x(f.Secrets)...), f
	}

	t.Run("CrashAtStart", func(t *testing.T) {
		n, _ := start(t, newDatabase(t, pg), map[string]string{"standin-crash": ""})
		if code := n.exitCode(t, 10*time.Second); code != 1 {
			t.Errorf("exit code = %d; want 1", code)
		}
		if n.out.find("crash injected") == nil || n.out.find("lease acquired") != nil {
			t.Errorf("want a crash before taking the lease:\n%s", n.out.String())
		}
	})

	t.Run("NeverReady", func(t *testing.T) {
		n, _ := start(t, newDatabase(t, pg), map[string]string{"standin-unready": ""})
		n.waitLog(t, "listening", 20*time.Second)
		base := "http://127.0.0.1:" + strconv.Itoa(n.port)
		if code := httpGet(base + "/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz = %d; want 503", code)
		}
		if code := httpGet(base + "/health"); code != http.StatusOK {
			t.Errorf("/health = %d; want 200", code)
		}
		if n.out.find("ready") != nil {
			t.Error("logged ready")
		}
	})

	t.Run("ExitAfterKeepsTheLease", func(t *testing.T) {
		db := newDatabase(t, pg)
		n, _ := start(t, db, map[string]string{"standin-exit-after": "1500ms\n"})
		n.waitLog(t, "ready", 20*time.Second)
		if code := n.exitCode(t, 10*time.Second); code != 1 {
			t.Fatalf("exit code = %d; want 1", code)
		}
		if n.out.find("exit-after elapsed") == nil || n.out.find("stopping") != nil {
			t.Errorf("want an abrupt exit:\n%s", n.out.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var held bool
		if err := db.superuser(t).QueryRow(ctx, `SELECT expires_at > NOW() FROM lease_lock`).Scan(&held); err != nil || !held {
			t.Errorf("lease after an injected exit: held=%v err=%v; want still held (not released)", held, err)
		}
	})
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	writeFiles(t, filepath.Dir(path), map[string]string{filepath.Base(path): content})
}
