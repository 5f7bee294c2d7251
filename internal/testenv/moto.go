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

// Moto is a moto_server (moto 5.2.1: Secrets Manager, CloudWatch Logs, CloudWatch, KMS, STS …) on loopback. It
// accepts any credentials ("test"/"test" by convention) and any region. State lives in memory and dies with Stop.
type Moto struct {
	URL string // http://127.0.0.1:PORT

	proc *proc
}

// StartMoto starts moto_server (from PATH) on a free loopback port, logging to dir/moto.log, and waits until GET /
// answers.
func StartMoto(ctx context.Context, dir string) (*Moto, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server not on PATH (moto 5.2.1 in the image's Python): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("moto dir: %w", err)
	}
	return withFreePort(func(port int) (*Moto, error) {
		cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		cmd.Dir = dir
		p, err := startProc("moto_server", filepath.Join(dir, "moto.log"), cmd)
		if err != nil {
			return nil, err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		if err := p.waitReady(ctx, port, httpProbe(http.MethodGet, url+"/", nil, http.StatusOK)); err != nil {
			return nil, err
		}
		return &Moto{URL: url, proc: p}, nil
	})
}

// Stop terminates moto_server and everything it started. Safe to call more than once.
func (m *Moto) Stop() error {
	return m.proc.stop(syscall.SIGTERM, stopGrace)
}
