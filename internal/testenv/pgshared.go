package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// SharedPostgres is one PostgreSQL server for every test of a package that gives each test its own database: it
// starts on first use (Get) and stops when the package's TestMain calls Stop after m.Run.
type SharedPostgres struct {
	Name string // names its directory, cl-agent-<Name>-pg-…

	once sync.Once
	pg   *Postgres
	err  error
}

// Get starts the server on first use and returns it; a failed start fails tb.
func (s *SharedPostgres) Get(tb testing.TB) *Postgres {
	tb.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "cl-agent-"+s.Name+"-pg-")
		if err != nil {
			s.err = err
			return
		}
		if s.pg, s.err = StartPostgres(ctx, dir); s.err != nil {
			os.RemoveAll(dir)
		}
	})
	if s.err != nil {
		tb.Fatalf("start the shared postgres: %v", s.err)
	}
	return s.pg
}

// Stop stops the server if it was started, saying so on stderr when that fails.
func (s *SharedPostgres) Stop() {
	if s.pg == nil {
		return
	}
	if err := s.pg.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop the shared postgres: %v\n", err)
	}
}
