// Command cl-agent runs and operates a highly available Chainlink node on an EC2 host. See `cl-agent --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/logging"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	guardProcess()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs a command with both outputs scrubbed of every secret value the process learns (the command's own
// lines and the final error alike) and returns the exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	out, errOut := logging.NewRedactor(stdout), logging.NewRedactor(stderr)
	return report(run(ctx, args, out, errOut), errOut)
}

// report prints err (already redacted by the commands' writers) and returns the exit code it maps to.
func report(err error, stderr io.Writer) int {
	code := exitCode(err)
	if code != exitcode.OK && !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "%scl-agent: %v\n", errPriority, err)
	}
	return code
}

// errPriority makes the final error line an error in the journal (the logger marks its own lines).
var errPriority = func() string {
	if logging.StdoutIsJournal() {
		return "<3>"
	}
	return ""
}()

// errReported marks a failure the command has already explained on its output (e.g. check's FAIL lines).
var errReported = errors.New("reported")

// exitCode maps an error to the exit code contract with systemd (agent/exitcode; README, "Commands"): a cancelled
// context is a clean stop, and every other error is exitcode.Of's (its own code, else worth retrying).
func exitCode(err error) int {
	if errors.Is(err, context.Canceled) {
		return exitcode.OK
	}
	return exitcode.Of(err)
}

// usageError is bad usage of the command line: exitcode.Config.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
func (e *usageError) ExitCode() int { return exitcode.Config }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }
