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

	"github.com/cl-agent/cl-agent/agent/logging"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes: the contract with systemd (DESIGN.md §7). The unit does not restart on 2 or 5.
const (
	exitOK       = 0
	exitRetry    = 1
	exitUsage    = 2
	exitTerminal = 5
)

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
	if code != exitOK && !errors.Is(err, errReported) {
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

// exitCode maps an error to the exit code contract: anything that knows its code says so (configuration errors
// 2, terminal secret errors 5); a cancelled context is a clean stop; everything else is worth retrying.
func exitCode(err error) int {
	if err == nil || errors.Is(err, context.Canceled) {
		return exitOK
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return exitRetry
}

// usageError is bad usage of the command line: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
func (e *usageError) ExitCode() int { return exitUsage }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }
