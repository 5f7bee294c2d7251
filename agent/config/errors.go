package config

import (
	"errors"
	"fmt"

	"github.com/cl-agent/cl-agent/agent/exitcode"
)

// Sentinels wrapped by FieldError; test with errors.Is.
var (
	ErrUnknownKey     = errors.New("unknown key")
	ErrRequired       = errors.New("is required")
	ErrInvalid        = errors.New("is invalid")
	ErrOutOfRange     = errors.New("is out of range")
	ErrUnknownNetwork = errors.New("unknown network")
	ErrTiming         = errors.New("breaks the timing invariant")
	ErrSyntax         = errors.New("is not valid YAML")
	// ErrChecksum: an EVM address whose letters are not in their EIP-55 checksum case, which the node refuses.
	ErrChecksum = errors.New("is not in EIP-55 checksum case")
	// ErrAgentOwned: node.extra_toml sets or replaces something the agent writes into config.toml or relies on.
	ErrAgentOwned = errors.New("is the agent's")
)

// FieldError is one problem with one configuration key. Field is the dotted key ("node.database.port"), Line the
// line of the file it came from (0 when it was a default or an environment override), Value the offending value
// as text (configuration holds no secrets, so quoting it is safe), and Err a sentinel with detail.
type FieldError struct {
	Field string
	Line  int
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	where := e.Field
	if e.Line > 0 {
		where = fmt.Sprintf("%s (line %d)", e.Field, e.Line)
	}
	if e.Value != "" {
		return fmt.Sprintf("config: %s: %v (got %q)", where, e.Err, e.Value)
	}
	return fmt.Sprintf("config: %s: %v", where, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// ExitCode makes every configuration error exit exitcode.Config (bad usage or configuration; agent/exitcode).
func (e *FieldError) ExitCode() int { return exitcode.Config }

// detail wraps a sentinel with a sentence that says what the rule is.
func detail(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
