package standin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Where the agent mounts the node's files in the container.
const (
	secretsMount = "/run/chainlink"
	dataMount    = "/chainlink"
)

// TestImageInDocker runs the image as the agent does: files mounted read-only and readable only by the node's
// uid, the data dir owned by 14933, the database reached at the bridge gateway with the server verified. The
// 2.x node gets ready, answers /health (207 with an injected failure) and the API, and releases the lease on
// docker stop (exit 0); a 1.x node on the same database then takes over at once.
func TestImageInDocker(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	image := Repository + ":test-" + testenv.RandomHex(4)
	if err := BuildImage(ctx, image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", image).Run() }) // untags: the sha- tag keeps the image
	checkImageConfig(t, ctx, image)

	db := newDatabase(t, pg)
	dbURL := db.url(pg.BridgeHost, secretsMount+"/ca.crt")
	f := tomlFiles(t, dbURL, dataMount, 6688, 30*time.Second, time.Second)
	ownForNode(t, f, pg.CAFile)

	name := "cl-agent-standin-test-" + testenv.RandomHex(4)
	dockerRun(t, ctx, name, f, nil, nil, image, args2x(secretsMount)...)
	base := "http://" + hostPort(t, ctx, name)
	testenv.WaitFor(t, 30*time.Second, "the 2.x container to be ready", func() bool { return httpGet(base+"/readyz") == http.StatusOK })

	if code := httpGet(base + "/health"); code != http.StatusOK {
		t.Errorf("/health = %d; want 200", code)
	}
	write(t, filepath.Join(f.Data, "standin-health-fail"), "EVM.1")
	chown(t, filepath.Join(f.Data, "standin-health-fail"), 0o400) // the node reads it as 14933
	if code := httpGet(base + "/health"); code != http.StatusMultiStatus {
		t.Errorf("/health with an injected failure = %d; want 207", code)
	}
	checkAPI(t, base)

	if out, err := exec.CommandContext(ctx, "docker", "stop", "-t", "10", name).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	if code := containerExitCode(t, ctx, name); code != 0 {
		t.Errorf("exit code after docker stop = %d; want 0", code)
	}
	logs := containerLogs(t, ctx, name)
	for _, msg := range []string{"lease acquired", "listening", "ready", "stopping", "stopped"} {
		if findLog(logs, msg) == nil {
			t.Errorf("container log has no %q line:\n%s", msg, logs)
		}
	}
	for _, secret := range []string{db.password, keystorePW, apiPassword} {
		if strings.Contains(logs, secret) {
			t.Errorf("container log quotes a secret:\n%s", logs)
		}
	}

	// The same image as a 1.x node: configuration from the environment, DATABASE_URL passed by name so its
	// value stays out of the docker command line.
	legacy := name + "-1x"
	dockerRun(t, ctx, legacy, f, []string{"DATABASE_URL=" + dbURL},
		[]string{"-e", "DATABASE_URL", "-e", "ROOT=" + dataMount, "-e", "DATABASE_LOCKING_MODE=lease", "-e", "JSON_CONSOLE=true"},
		image, "local", "n", "-p", secretsMount+"/.password", "-a", secretsMount+"/.api")
	legacyBase := "http://" + hostPort(t, ctx, legacy)
	// The 2.x node released its lease: the 1.x node must not wait for the 30 s lease to expire.
	testenv.WaitFor(t, 15*time.Second, "the 1.x container to be ready", func() bool { return httpGet(legacyBase+"/readyz") == http.StatusOK })
	if out, err := exec.CommandContext(ctx, "docker", "stop", "-t", "10", legacy).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	if code := containerExitCode(t, ctx, legacy); code != 0 {
		t.Errorf("1.x exit code after docker stop = %d; want 0", code)
	}
	ivs := db.intervals(t)
	if len(ivs) != 2 {
		t.Fatalf("intervals = %+v; want one per container", ivs)
	}
	assertNoOverlap(t, ivs)
}

// TestImageRefusesMissingFile: in the container too, a missing file stops the node with exit 1 and a log line
// naming it.
func TestImageRefusesMissingFile(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	image := Repository + ":test-" + testenv.RandomHex(4)
	if err := BuildImage(ctx, image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", image).Run() })
	dbURL := (&url.URL{Scheme: "postgres", User: url.UserPassword("u", keystorePW), Host: "127.0.0.1:1", Path: "/x"}).String()
	f := tomlFiles(t, dbURL, dataMount, 6688, 10*time.Second, time.Second)
	remove(t, f.path(".api"))
	ownForNode(t, f, "")
	name := "cl-agent-standin-test-" + testenv.RandomHex(4)
	dockerRun(t, ctx, name, f, nil, nil, image, args2x(secretsMount)...)
	out, err := exec.CommandContext(ctx, "docker", "wait", name).Output()
	if err != nil {
		t.Fatalf("docker wait: %v", err)
	}
	if code := strings.TrimSpace(string(out)); code != "1" {
		t.Errorf("exit code = %s; want 1", code)
	}
	line := findLog(containerLogs(t, ctx, name), "refusing to start")
	if msg, _ := line["error"].(string); !strings.Contains(msg, secretsMount+"/.api") || !strings.Contains(msg, "no such file") {
		t.Errorf("refusal = %v; want one naming %s/.api", line, secretsMount)
	}
}

// ownForNode gives the files to the node's uid as the agent does: secrets 0400 in a 0500 dir, the data dir 0700.
func ownForNode(t *testing.T, f nodeFiles, caFile string) {
	t.Helper()
	if caFile != "" {
		ca, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		write(t, f.path("ca.crt"), string(ca))
	}
	entries, err := os.ReadDir(f.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		chown(t, f.path(e.Name()), 0o400)
	}
	chown(t, f.Secrets, 0o500)
	chown(t, f.Data, 0o700)
}

func chown(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chown(path, UID, GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// dockerRun starts a detached container with f mounted (secrets read-only) and 6688 published on a random
// loopback port. env is the docker CLI's own environment (so "-e NAME" passes a value by name), opts are
// docker run options, args the node's command line.
func dockerRun(t *testing.T, ctx context.Context, name string, f nodeFiles, env, opts []string, image string, args ...string) {
	t.Helper()
	cmdArgs := append([]string{"run", "--detach", "--name", name, "--publish", "127.0.0.1::6688",
		"--volume", f.Secrets + ":" + secretsMount + ":ro", "--volume", f.Data + ":" + dataMount}, opts...)
	cmdArgs = append(append(cmdArgs, image), args...)
	cmd := exec.CommandContext(ctx, "docker", cmdArgs...)
	cmd.Env = append(os.Environ(), env...)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "--force", name).Run() })
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker run %s: %v\n%s", name, err, out)
	}
}

func hostPort(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "port", name, "6688/tcp").Output()
	if err != nil {
		t.Fatalf("docker port %s: %v", name, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func containerExitCode(t *testing.T, ctx context.Context, name string) int {
	t.Helper()
	code, err := strconv.Atoi(inspect(t, ctx, name, "{{.State.ExitCode}}"))
	if err != nil {
		t.Fatalf("exit code of %s: %v", name, err)
	}
	return code
}

// inspect is `docker inspect --format format name`, trimmed.
func inspect(t *testing.T, ctx context.Context, name, format string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "inspect", "--format", format, name).Output()
	if err != nil {
		t.Fatalf("docker inspect %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

func containerLogs(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "logs", name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker logs %s: %v\n%s", name, err, out)
	}
	return string(out)
}

// checkImageConfig: the image is shaped like the real one.
func checkImageConfig(t *testing.T, ctx context.Context, image string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{json .Config}}", image).Output()
	if err != nil {
		t.Fatalf("docker image inspect: %v", err)
	}
	var cfg struct {
		User         string
		Entrypoint   []string
		ExposedPorts map[string]any
		Labels       map[string]string
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.User != "14933:14933" || !slices.Equal(cfg.Entrypoint, []string{"chainlink"}) || cfg.ExposedPorts["6688/tcp"] == nil || cfg.Labels[HashLabel] == "" {
		t.Errorf("image config = %+v", cfg)
	}
}

// checkAPI logs in with the .api credentials and reads the keys; without the cookie the API answers 401.
func checkAPI(t *testing.T, base string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	if resp, err := c.Get(base + "/v2/keys/eth"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/v2/keys/eth without a session: %v %v; want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	body, _ := json.Marshal(map[string]string{"email": apiEmail, "password": apiPassword})
	resp, err := c.Post(base+"/sessions", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /sessions: %v %v; want 200", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get(base + "/v2/keys/eth")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/v2/keys/eth with a session: %v %v; want 200", resp, err)
	}
	defer resp.Body.Close()
	var keys struct {
		Data []struct{ Attributes struct{ EthBalance string } }
	}
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil || len(keys.Data) != 1 || keys.Data[0].Attributes.EthBalance != "1000000000000000000" {
		t.Errorf("/v2/keys/eth = %+v, %v", keys, err)
	}
}
