package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/bootstrap"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
)

// checkTimeout bounds the checks that have no configured bound of their own (Docker, the database).
const checkTimeout = 10 * time.Second

// checkFailed carries the worst exit code of the failed checks; the lines are already printed.
type checkFailed struct{ code int }

func (e *checkFailed) Error() string { return "check failed" }
func (e *checkFailed) ExitCode() int { return e.code }
func (e *checkFailed) Unwrap() error { return errReported }

// runCheck runs every preflight check and prints one line per check: ok, FAIL (with the reason) or skip (when a
// check it needs failed). The exit code is the worst of the failures (2 configuration, 5 terminal, 1 retryable).
func runCheck(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("check", errOut)
	if err := f.parse(args); err != nil {
		return err
	}
	worst := exitOK
	line := func(name string, err error, detail string) bool {
		if err != nil {
			fmt.Fprintf(out, "FAIL  %-9s %v\n", name, err)
			worst = max(worst, exitCode(err))
			return false
		}
		fmt.Fprintf(out, "ok    %-9s %s\n", name, detail)
		return true
	}
	skip := func(names ...string) {
		for _, n := range names {
			fmt.Fprintf(out, "skip  %-9s needs the checks above\n", n)
		}
	}
	done := func() error {
		if worst == exitOK {
			return nil
		}
		return &checkFailed{code: worst}
	}

	h, err := agent.Open(*f.configPath, errOut)
	if !line("config", err, *f.configPath) {
		skip("imds", "secrets", "database", "docker", "image", "chain-http", "chain-ws")
		return done()
	}
	line("docker", checkDocker(ctx), "engine answers")
	img, err := h.ResolveImage(ctx)
	line("image", err, img.String())
	checkChain(ctx, h.Config, line, out)

	if err := h.Learn(ctx); !line("imds", err, fmt.Sprintf("%s %s %s %s", h.Identity.InstanceID, h.Identity.Region, h.Identity.AZ, h.Identity.PrivateIP)) {
		skip("secrets", "database")
		return done()
	}
	secrets, err := h.FetchSecrets(ctx)
	if !line("secrets", err, "database_password, api_password and keystore_password fetched and meet the node's rules") {
		skip("database")
		return done()
	}
	version, err := checkDatabase(ctx, h.Config, secrets.DatabasePassword)
	line("database", err, version)
	return done()
}

func checkDocker(ctx context.Context) error {
	engine, err := container.NewDockerEngine(checkTimeout)
	if err != nil {
		return err
	}
	defer engine.Close()
	return engine.Ping(ctx) // bounded by checkTimeout; the error names the bound
}

// checkDatabase connects as the node will (same URL, TLS settings and password) and reports the server version.
func checkDatabase(ctx context.Context, c *config.Config, password bootstrap.Secret) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, bootstrap.DatabaseURL(c.Node.Database, password.Reveal(), ""))
	if err != nil {
		// pgx masks the password in its errors; the redactor would catch it anyway.
		return "", fmt.Errorf("connect to %s:%d/%s as %s (bound %s): %w", c.Node.Database.Host, c.Node.Database.Port,
			c.Node.Database.Name, c.Node.Database.User, checkTimeout, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "", fmt.Errorf("query the database: %w", err)
	}
	return "PostgreSQL " + v + " reachable with the node's credentials", nil
}
