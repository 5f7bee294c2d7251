package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// toolBuildTimeout bounds `go tool -n`, which compiles the tool on a cold build cache (the registry takes a while).
const toolBuildTimeout = 5 * time.Minute

var toolCache struct {
	sync.Mutex
	paths map[string]string
}

// ModuleRoot is the cl-agent module's directory, for tests that run its scripts.
func ModuleRoot(ctx context.Context) (string, error) { return moduleRoot(ctx) }

// ToolPath is toolPath for tests that run a pinned tool elsewhere (inside a system-test host).
func ToolPath(ctx context.Context, name string) (string, error) { return toolPath(ctx, name) }

// toolPath returns the executable of a tool pinned in go.mod (`tool` directive), building it into the Go build cache
// once per process. Running the executable directly (rather than `go tool NAME`) keeps our child the server itself, so
// the parent-death signal and the listener check apply to it. Parallel test binaries share the build cache safely.
func toolPath(ctx context.Context, name string) (string, error) {
	toolCache.Lock()
	defer toolCache.Unlock() // serialises concurrent first uses in one process; later calls hit the map
	if p, ok := toolCache.paths[name]; ok {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, toolBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", name)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n %s (bound %s): %w: %s", name, toolBuildTimeout, err, strings.TrimSpace(stderr.String()))
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("go tool -n %s printed %q: %w", name, p, err)
	}
	if toolCache.paths == nil {
		toolCache.paths = make(map[string]string)
	}
	toolCache.paths[name] = p
	return p, nil
}

// moduleRoot is the directory of the go.mod governing the working directory (the package directory under go test).
func moduleRoot(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD (bound 30s): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("no go.mod above the working directory: run inside the cl-agent module")
	}
	return filepath.Dir(gomod), nil
}
