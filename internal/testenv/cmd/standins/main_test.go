package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

func TestParseIdentity(t *testing.T) {
	got, err := parseIdentity("i-0fedcba9876543210,10.0.2.10,us-east-1b")
	want := testenv.Identity{InstanceID: "i-0fedcba9876543210", PrivateIP: "10.0.2.10", AZ: "us-east-1b", Region: "us-east-1"}
	if err != nil || got != want {
		t.Errorf("parseIdentity = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "i-1,10.0.0.1", "i-1,10.0.0.1,us-east-1"} {
		if _, err := parseIdentity(bad); err == nil {
			t.Errorf("parseIdentity(%q) accepted", bad)
		}
	}
}

func TestRunWritesEnvFileAndCleansUp(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "demo.env")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--env-file", envFile, "--imds2", "i-0fedcba9876543210,10.0.2.10,us-east-1b"}, &out)
	}()

	env := waitForEnvFile(t, envFile, done)
	for _, key := range []string{"PG_HOST", "PG_BRIDGE_HOST", "PG_PORT", "PG_PASSWORD", "PG_CAFILE", "MOTO_URL", "IMDS_URL", "IMDS2_URL", "REGISTRY_ADDR"} {
		if env[key] == "" {
			t.Errorf("env file lacks %s", key)
		}
	}
	fi, err := os.Stat(envFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("env file mode: %v %v, want 0600", fi, err)
	}
	resp, err := http.Get(env["MOTO_URL"])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return 30s after cancel")
	}
	if strings.Contains(out.String(), env["PG_PASSWORD"]) || !strings.Contains(out.String(), "PG_PASSWORD=****") {
		t.Errorf("stdout must mask the password:\n%s", out.String())
	}
	if _, err := os.Stat(envFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("env file left behind: %v", err)
	}
	if _, err := http.Get(env["MOTO_URL"]); err == nil {
		t.Error("moto still answers after run returned")
	}
}

// waitForEnvFile waits up to 3m for run to write the env file, failing at once should run return first.
func waitForEnvFile(t *testing.T, path string, done <-chan error) map[string]string {
	t.Helper()
	var b []byte
	testenv.WaitFor(t, 3*time.Minute, "the env file", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run returned before writing the env file: %v", err)
		default:
		}
		var err error
		b, err = os.ReadFile(path)
		return err == nil
	})
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}
