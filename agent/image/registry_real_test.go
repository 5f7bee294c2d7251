package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestRealRegistry pushes a tiny FROM scratch image under several tags to a real CNCF distribution registry
// with the docker CLI, then resolves against it: the highest X.Y.Z wins and its digest is the one
// `docker push` reported, and the engine pulls it by that digest.
func TestRealRegistry(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	reg := testenv.RegistryT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	repo := fmt.Sprintf("%s/clagent-imgtest-%d/chainlink", reg.Addr, time.Now().UnixNano())
	// Push order is not version order; the non-releases are pushed last, as on Docker Hub.
	tags := []string{"1.9.9", "1.10.0", "1.2.3", "1.10.0-rc.1", "1.11.0-beta.0", "1.10.0-root", "latest", "sha-abc1234"}
	pushed := make(map[string]string)
	for _, tag := range tags {
		pushed[tag] = buildAndPush(t, ctx, repo+":"+tag)
	}

	o := Options{Repository: repo, StateDir: t.TempDir(), Timeout: 10 * time.Second, Logger: zaptest.NewLogger(t)}
	img, err := Resolve(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if img.Tag != "1.10.0" || img.Digest != pushed["1.10.0"] {
		t.Fatalf("resolved %s, want 1.10.0@%s as docker push reported", img, pushed["1.10.0"])
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec.CommandContext(ctx, "docker", "rmi", "-f", img.Ref()).Run()
	})
	if out := docker(t, ctx, "pull", img.Ref()); !strings.Contains(out, img.Digest) { // the engine pulls what we pin
		t.Fatalf("docker pull %s: %s", img.Ref(), out)
	}

	o.Tag = "1.10.0-root"
	if img, err := Resolve(ctx, o); err != nil || img.Digest != pushed["1.10.0-root"] {
		t.Fatalf("pinned: %s, %v; want %s", img, err, pushed["1.10.0-root"])
	}

	o.Tag, o.Arch = "", "arm64" // the images are this host's (amd64): none qualifies
	if _, err := Resolve(ctx, o); !errors.Is(err, ErrNoRelease) || !strings.Contains(err.Error(), "1.10.0, 1.9.9, 1.2.3") {
		t.Fatalf("err = %v, want ErrNoRelease naming the skipped releases", err)
	}
}

var pushDigest = regexp.MustCompile(`digest: (sha256:[a-f0-9]{64})`)

// buildAndPush builds a FROM scratch image holding its own reference (so each tag has its own digest),
// pushes it and returns the digest docker push reported.
func buildAndPush(t *testing.T, ctx context.Context, ref string) string {
	dir := t.TempDir()
	files := map[string]string{"Dockerfile": "FROM scratch\nCOPY ref.txt /ref.txt\n", "ref.txt": ref + "\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec.CommandContext(ctx, "docker", "rmi", "-f", ref).Run()
	})
	docker(t, ctx, "build", "-q", "-t", ref, dir)
	m := pushDigest.FindStringSubmatch(docker(t, ctx, "push", ref))
	if m == nil {
		t.Fatalf("docker push %s reported no digest", ref)
	}
	return m[1]
}

func docker(t *testing.T, ctx context.Context, args ...string) string {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
