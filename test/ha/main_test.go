package ha

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// buildBound bounds the one build of cl-agent per test binary.
const buildBound = 5 * time.Minute

// agentBin is the cl-agent binary under test, built once by TestMain.
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", prefix+"bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ha:", err)
		os.Exit(1)
	}
	agentBin, err = buildAgent(dir)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "ha:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildAgent builds ./cmd/cl-agent statically (CGO_ENABLED=0), as it ships, into dir.
func buildAgent(dir string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot find the module root")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(dir, "cl-agent")
	ctx, cancel := context.WithTimeout(context.Background(), buildBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/cl-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/cl-agent (bound %s): %w\n%s", buildBound, err, b)
	}
	return out, nil
}
