package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"
)

// guardProcess makes a crash of the agent safe and visible to systemd, whatever unit or shell started it:
//   - no core dump, ever: a core of this process holds the node's secrets (RLIMIT_CORE 0, and not dumpable, which
//     also keeps other users' debuggers out of its memory);
//   - a panic or a fatal signal (the watchdog's SIGABRT) ends the process by SIGABRT after the stack trace, not with
//     Go's exit status 2: 2 means "bad configuration" to systemd (RestartPreventExitStatus), and a hung or
//     panicking agent must be restarted.
//
// Failures are ignored: under the unit's syscall filter setrlimit is refused, and the unit's LimitCORE=0 already
// holds.
func guardProcess() {
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0})
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	debug.SetTraceback("crash")
}

// testHooksEnv enables test-only triggers when it names them; production units never set it. The system tests set
// it in a drop-in, so the binary and the unit under test stay the shipped ones.
const testHooksEnv = "CL_AGENT_TEST_HOOKS"

// armTestPanic makes SIGUSR1 panic the daemon when CL_AGENT_TEST_HOOKS=panic-on-sigusr1: the way the system tests
// prove that a panic is restarted by systemd and leaves no core. Without the variable SIGUSR1 is left as it is.
func armTestPanic(ctx context.Context) {
	if os.Getenv(testHooksEnv) != "panic-on-sigusr1" {
		return
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		select {
		case <-usr1:
			panic("test hook: SIGUSR1 with " + testHooksEnv + "=panic-on-sigusr1")
		case <-ctx.Done():
			signal.Stop(usr1)
		}
	}()
}
