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

// standinVersion is what --version prints unless CL_STANDIN_VERSION is set; one image serves every tag.
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
		fmt.Fprintf(stdout, "chainlink version %s@standin\n", versionOf(env))
		return nil
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
