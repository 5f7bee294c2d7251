// Package exitcode is the agent's exit-code contract with systemd and operators (README, Commands):
//
//	0 OK        the agent stopped cleanly
//	1 Retry     a failure worth retrying: systemd restarts the agent
//	2 Config    bad usage or configuration
//	5 Terminal  restarting cannot help until an operator acts (access denied, a secret that breaks the
//	            node's rules)
//
// The unit sets RestartPreventExitStatus=2 5, so the agent does not restart on Config or Terminal. An error
// carries its code by implementing Coder (or by being wrapped with New); Of reads it at the one place the
// process exits. An error without a code is worth retrying.
package exitcode

import "errors"

// The exit codes. Their values are a public contract: do not renumber them.
const (
	OK       = 0
	Retry    = 1
	Config   = 2
	Terminal = 5
)

// Coder is an error that knows the code the agent should exit with.
type Coder interface {
	ExitCode() int
}

// Of is the exit code for err: OK for nil, the code of the first Coder in err's chain (errors.As), and Retry
// for any other error.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var c Coder
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return Retry
}

// IsTerminal reports whether restarting the agent cannot fix err: its code is Config or Terminal.
func IsTerminal(err error) bool {
	switch Of(err) {
	case Config, Terminal:
		return true
	}
	return false
}

// New wraps err with code, for call sites whose error type has no ExitCode of its own. The message is err's
// and Unwrap returns err, so errors.Is and errors.As still see through it. New(code, nil) is nil.
func New(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) ExitCode() int { return e.code }
