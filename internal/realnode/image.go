package realnode

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Version is the node version the tests run unless they ask for another: v2.19.0, the release this project's
// facts about the node were measured on (commit d7b5f7bd0d0db82550e39223aeeb5a5eafe01e24).
const Version = "2.19.0"

// buildTimeout bounds build.sh. A cold build downloads ~5 GB of modules and compiles for several minutes on
// 2 cores; a cached image answers in well under a second.
const buildTimeout = 40 * time.Minute

// deadlineMargin is left of a test's deadline to report a build that did not finish.
const deadlineMargin = 30 * time.Second

// buildScript is test/images/chainlink/build.sh relative to the module root.
const buildScript = "test/images/chainlink/build.sh"

var images struct {
	sync.Mutex
	refs map[string]string // version → image reference, once built or found in this process
}

// Image returns the reference of the real node image of Version, building it when it is missing or stale. A
// failed build fails the test.
func Image(t testing.TB) string {
	t.Helper()
	return ImageOf(t, Version)
}

// ImageOf is Image for another X.Y.Z version (one the Go module proxy serves). A build is bounded by the test
// binary's own deadline (less a margin to report it), so a cold build under a short -timeout fails with a hint
// instead of the test binary's panic.
func ImageOf(t testing.TB, version string) string {
	t.Helper()
	ctx := context.Background()
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, set := dt.Deadline(); set {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
			defer cancel()
		}
	}
	ref, err := BuildImage(ctx, version)
	if err != nil {
		if ctx.Err() != nil {
			t.Fatalf("realnode: the image build did not finish before the test deadline; build it first "+
				"(bash %s %s: cold, a ~5 GB module download and minutes of compiling): %v", buildScript, version, err)
		}
		t.Fatalf("realnode: %v", err)
	}
	return ref
}

// BuildImage runs build.sh for version once per process (concurrent callers wait for the first) and returns the
// image reference it prints. build.sh itself is a no-op when the image is cached.
func BuildImage(ctx context.Context, version string) (string, error) {
	images.Lock()
	defer images.Unlock()
	if ref, ok := images.refs[version]; ok {
		return ref, nil
	}
	root, err := testenv.ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, buildScript), version)
	// On the deadline end the whole build (go, the compiler, docker CLI), not only bash: its own process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s (bound %s): %w\n%s", buildScript, version, buildTimeout, err, strings.TrimSpace(stderr.String()))
	}
	ref := strings.TrimSpace(string(out))
	if ref == "" || strings.ContainsAny(ref, " \n") {
		return "", fmt.Errorf("%s %s printed %q, not an image reference", buildScript, version, out)
	}
	if images.refs == nil {
		images.refs = make(map[string]string)
	}
	images.refs[version] = ref
	return ref, nil
}
