package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// standinVersion is what --version prints unless CL_STANDIN_VERSION (a release's, release.go) is set.
const standinVersion = "0.0.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err))
}

// run is the whole program; a cancelled ctx (SIGTERM, SIGINT) is a clean stop.
func run(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) error {
	inv, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "chainlink: %v\n%s", err, usage)
		return exitWith(2, err)
	}
	if inv.version {
		// The node's format, "chainlink version 2.19.0@<commit>" (urfave/cli, app.Version = Version@Sha).
		fmt.Fprintf(stdout, "chainlink version %s@standin\n", versionOf(env))
		return nil
	}
	if inv.gen == gen2 {
		// The node decodes its config inputs before either subcommand runs (its `node` command's Before hook); a
		// refusal there is its app's error, on stderr, exit 1 (release.go).
		if err := refusedKey(env, inv.configFiles); err != nil {
			fmt.Fprintf(stderr, "Error running app: %v\n", err)
			return exitWith(1, err)
		}
	}
	if inv.validate {
		return runValidate(inv, env, stdout)
	}
	return runNode(ctx, inv, env, stdout)
}

func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}
