// Command standins runs the local stand-ins for AWS and the database that `make demo` points cl-agent at: a
// PostgreSQL 15 cluster, moto_server, one or two EC2 metadata mocks and an image registry. It writes their
// addresses as KEY=VALUE lines to --env-file (mode 0600: it holds the database password), prints them with the
// password masked, and runs until SIGINT or SIGTERM, then stops everything and removes the env file.
//
//	go run ./internal/testenv/cmd/standins --env-file demo.env [--imds2 i-0fedcba9876543210,10.0.2.10,us-east-1b]
//
// Run it from inside the module (the metadata mock and the registry are tools pinned in go.mod).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

const (
	startBudget = 5 * time.Minute // a cold build cache compiles the registry first
	stopBudget  = 30 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "standins:", err)
		os.Exit(1)
	}
}

type options struct {
	envFile string
	imds    testenv.Identity
	imds2   *testenv.Identity
}

func parseFlags(args []string) (options, error) {
	var o options
	var imds2 string
	fs := flag.NewFlagSet("standins", flag.ContinueOnError)
	fs.StringVar(&o.envFile, "env-file", "", "write KEY=VALUE lines here (required; mode 0600, removed on exit)")
	fs.StringVar(&o.imds.InstanceID, "instance-id", "i-0123456789abcdef0", "instance id the metadata mock serves")
	fs.StringVar(&o.imds.Region, "region", "us-east-1", "region the metadata mock serves")
	fs.StringVar(&o.imds.AZ, "az", "us-east-1a", "availability zone the metadata mock serves")
	fs.StringVar(&o.imds.PrivateIP, "private-ip", "10.0.1.10", "local-ipv4 the metadata mock serves")
	fs.StringVar(&imds2, "imds2", "", "a second metadata mock: INSTANCE_ID,PRIVATE_IP,AZ (region = AZ minus its letter)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.envFile == "" {
		return o, errors.New("--env-file is required")
	}
	if imds2 != "" {
		id, err := parseIdentity(imds2)
		if err != nil {
			return o, err
		}
		o.imds2 = &id
	}
	return o, nil
}

// parseIdentity reads "i-0fedcba9876543210,10.0.2.10,us-east-1b".
func parseIdentity(s string) (testenv.Identity, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return testenv.Identity{}, fmt.Errorf("--imds2 %q: want INSTANCE_ID,PRIVATE_IP,AZ", s)
	}
	az := strings.TrimSpace(parts[2])
	region := strings.TrimRight(az, "abcdefghijklmnopqrstuvwxyz")
	if region == "" || region == az {
		return testenv.Identity{}, fmt.Errorf("--imds2 %q: availability zone %q does not end in a zone letter", s, az)
	}
	return testenv.Identity{
		InstanceID: strings.TrimSpace(parts[0]),
		PrivateIP:  strings.TrimSpace(parts[1]),
		AZ:         az,
		Region:     region,
	}, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	base, err := os.MkdirTemp("", "cl-agent-standins-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)

	s, startErr := startAll(ctx, base, o)
	defer s.stopAll()
	if startErr != nil {
		return startErr
	}
	env := s.env()
	if err := writeEnvFile(o.envFile, env); err != nil {
		return err
	}
	defer os.Remove(o.envFile)
	for _, kv := range env {
		if kv.key == "PG_PASSWORD" {
			kv.value = "********"
		}
		fmt.Fprintf(stdout, "%s=%s\n", kv.key, kv.value)
	}
	fmt.Fprintf(stdout, "# written to %s; running until SIGINT/SIGTERM\n", o.envFile)
	<-ctx.Done()
	return nil
}

// standins are the running services; a nil field was not started.
type standins struct {
	pg       *testenv.Postgres
	moto     *testenv.Moto
	imds     *testenv.IMDS
	imds2    *testenv.IMDS
	registry *testenv.Registry
}

// startAll starts every service at once; on an error the ones that did start are in the result for stopAll.
func startAll(ctx context.Context, base string, o options) (*standins, error) {
	ctx, cancel := context.WithTimeout(ctx, startBudget)
	defer cancel()
	s := &standins{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	launch := func(name string, start func() error) {
		wg.Go(func() {
			if err := start(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		})
	}
	launch("postgres", func() (err error) {
		s.pg, err = testenv.StartPostgres(ctx, filepath.Join(base, "postgres"))
		return err
	})
	launch("moto", func() (err error) { s.moto, err = testenv.StartMoto(ctx, filepath.Join(base, "moto")); return err })
	launch("imds", func() (err error) {
		s.imds, err = testenv.StartIMDS(ctx, filepath.Join(base, "imds"), o.imds)
		return err
	})
	if o.imds2 != nil {
		launch("imds2", func() (err error) {
			s.imds2, err = testenv.StartIMDS(ctx, filepath.Join(base, "imds2"), *o.imds2)
			return err
		})
	}
	launch("registry", func() (err error) {
		s.registry, err = testenv.StartRegistry(ctx, filepath.Join(base, "registry"))
		return err
	})
	wg.Wait()
	return s, errors.Join(errs...)
}

// stopAll stops whatever runs; errors go to stderr, as nothing else can be done about them on the way out.
func (s *standins) stopAll() {
	stoppers := map[string]interface{ Stop() error }{}
	if s.pg != nil {
		stoppers["postgres"] = s.pg
	}
	if s.moto != nil {
		stoppers["moto"] = s.moto
	}
	if s.imds != nil {
		stoppers["imds"] = s.imds
	}
	if s.imds2 != nil {
		stoppers["imds2"] = s.imds2
	}
	if s.registry != nil {
		stoppers["registry"] = s.registry
	}
	var wg sync.WaitGroup
	for name, st := range stoppers {
		wg.Go(func() {
			if err := st.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "standins: stop %s: %v\n", name, err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopBudget):
		fmt.Fprintf(os.Stderr, "standins: services still stopping after %s\n", stopBudget)
	}
}

type keyValue struct{ key, value string }

func (s *standins) env() []keyValue {
	env := []keyValue{
		{"PG_HOST", s.pg.Host},
		{"PG_BRIDGE_HOST", s.pg.BridgeHost},
		{"PG_PORT", strconv.Itoa(s.pg.Port)},
		{"PG_PASSWORD", s.pg.Password},
		{"PG_CAFILE", s.pg.CAFile},
		{"MOTO_URL", s.moto.URL},
		{"IMDS_URL", s.imds.URL},
		{"REGISTRY_ADDR", s.registry.Addr},
	}
	if s.imds2 != nil {
		env = append(env, keyValue{"IMDS2_URL", s.imds2.URL})
	}
	return env
}

// writeEnvFile writes the lines to a 0600 temp file beside path and renames it into place, so a reader never sees
// half a file and the password is never in a world-readable file.
func writeEnvFile(path string, env []keyValue) error {
	var b strings.Builder
	for _, kv := range env {
		fmt.Fprintf(&b, "%s=%s\n", kv.key, kv.value)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".standins-env-*")
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("env file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	return nil
}
