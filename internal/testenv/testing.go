package testenv

import (
	"context"
	"os"
	"testing"
	"time"
)

// tStartTimeout bounds one *T start, including a first build of a tool into the Go build cache.
const tStartTimeout = 3 * time.Minute

func tContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), tStartTimeout)
}

// PostgresT starts a cluster in a fresh $TMPDIR/cl-agent-testenv-pg-* dir and stops it (removing the dir) at
// cleanup. It fails the test when the cluster cannot start. Options add listen addresses (ExtraListen).
func PostgresT(t testing.TB, opts ...PostgresOption) *Postgres {
	t.Helper()
	ctx, cancel := tContext()
	defer cancel()
	dir, err := os.MkdirTemp("", "cl-agent-testenv-pg-")
	if err != nil {
		t.Fatalf("testenv: postgres dir: %v", err)
	}
	p, err := StartPostgres(ctx, dir, opts...)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("testenv: start postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testenv: stop postgres: %v", err)
		}
	})
	return p
}

// MotoT starts moto_server for the test and stops it at cleanup.
func MotoT(t testing.TB) *Moto {
	t.Helper()
	ctx, cancel := tContext()
	defer cancel()
	m, err := StartMoto(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("testenv: start moto: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("testenv: stop moto: %v", err)
		}
	})
	return m
}

// IMDST starts an IMDSv2 mock serving id for the test and stops it at cleanup.
func IMDST(t testing.TB, id Identity) *IMDS {
	t.Helper()
	ctx, cancel := tContext()
	defer cancel()
	m, err := StartIMDS(ctx, t.TempDir(), id)
	if err != nil {
		t.Fatalf("testenv: start imds: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("testenv: stop imds: %v", err)
		}
	})
	return m
}

// RegistryT starts an image registry for the test and stops it at cleanup (its storage goes with t.TempDir).
func RegistryT(t testing.TB) *Registry {
	t.Helper()
	ctx, cancel := tContext()
	defer cancel()
	r, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("testenv: start registry: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("testenv: stop registry: %v", err)
		}
	})
	return r
}

// DockerT fails the test unless the docker engine answers, starting dockerd if it is not running.
func DockerT(t testing.TB) {
	t.Helper()
	ctx, cancel := tContext()
	defer cancel()
	if err := EnsureDocker(ctx); err != nil {
		t.Fatalf("testenv: docker engine: %v", err)
	}
}
