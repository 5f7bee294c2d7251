package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// Registry is a CNCF distribution v3.0.0 image registry on loopback: plain HTTP, filesystem storage in its dir,
// deletes enabled. dockerd treats 127.0.0.0/8 as insecure, so `docker push/pull 127.0.0.1:PORT/name` works as is.
type Registry struct {
	Addr    string // 127.0.0.1:PORT
	Storage string // its filesystem storage: another registry may serve the same images from it (read-only)

	proc *proc
}

// StartRegistry starts `registry serve` with its config, storage (dir/storage) and log in dir, and waits until
// GET /v2/ answers 200.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	bin, err := toolPath(ctx, "registry")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry dir: %w", err)
	}
	return withFreePort(func(port int) (*Registry, error) {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		configPath := filepath.Join(dir, "registry.yml")
		if err := os.WriteFile(configPath, []byte(RegistryConfig(filepath.Join(dir, "storage"), addr)), 0o644); err != nil {
			return nil, fmt.Errorf("write registry config: %w", err)
		}
		cmd := exec.Command(bin, "serve", configPath)
		cmd.Dir = dir
		// Tracing exports nowhere: the default OTLP exporter would retry a collector that is not there.
		cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
		p, err := startProc("registry", filepath.Join(dir, "registry.log"), cmd)
		if err != nil {
			return nil, err
		}
		if err := p.waitReady(ctx, port, httpProbe(http.MethodGet, "http://"+addr+"/v2/", nil, http.StatusOK)); err != nil {
			return nil, err
		}
		return &Registry{Addr: addr, Storage: filepath.Join(dir, "storage"), proc: p}, nil
	})
}

// Stop terminates the registry. Its storage stays in dir (the caller's). Safe to call more than once.
func (r *Registry) Stop() error {
	return r.proc.stop(syscall.SIGTERM, stopGrace)
}

// RegistryConfig is the configuration of a registry serving storage on addr.
func RegistryConfig(storage, addr string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  headers:
    X-Content-Type-Options: [nosniff]
`, storage, addr)
}
