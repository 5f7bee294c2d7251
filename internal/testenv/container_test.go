package testenv

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPostgresFromContainer runs a FROM-scratch image as the node's uid on the default bridge: it must reach the
// cluster at BridgeHost, verify the server certificate with a copy of CAFile, and log in with scram-sha-256.
func TestPostgresFromContainer(t *testing.T) {
	t.Parallel()
	DockerT(t)
	p := PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	image := buildPgpingImage(t, ctx)
	name := "cl-agent-testenv-pgping-" + RandomHex(6)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	cmd := exec.CommandContext(ctx, "docker", "run", "--rm", "--name", name, "--network", "bridge",
		"--user", "14933:14933", "-v", p.CAFile+":/ca.crt:ro",
		"-e", "PGHOST="+p.BridgeHost, "-e", "PGPORT="+strconv.Itoa(p.Port), "-e", "PGUSER=postgres",
		"-e", "PGPASSWORD", // value from the docker CLI's environment, not from its arguments
		"-e", "PGDATABASE=postgres", "-e", "PGSSLMODE=verify-full", "-e", "PGSSLROOTCERT=/ca.crt", image)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+p.Password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgping in a container: %v\n%s", err, out)
	}
	t.Logf("pgping: %s", bytes.TrimSpace(out))
	var client string
	var ssl bool
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "client="); ok {
			client = v
		}
		ssl = ssl || f == "ssl=true"
	}
	br, err := defaultBridge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddr(client)
	if err != nil || !br.Subnet.Contains(addr) || !ssl {
		t.Errorf("container connection: %q; want a client in %s over TLS", bytes.TrimSpace(out), br.Subnet)
	}
}

// buildPgpingImage compiles testdata/pgping statically and builds a FROM-scratch image of it, removed at cleanup.
func buildPgpingImage(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "pgping"), "./testdata/pgping")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build pgping: %v\n%s", err, out)
	}
	dockerfile := "FROM scratch\nCOPY pgping /pgping\nENTRYPOINT [\"/pgping\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	image := "cl-agent-testenv-pgping:" + RandomHex(6)
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", image, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	return image
}
