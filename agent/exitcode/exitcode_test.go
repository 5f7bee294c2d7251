package exitcode_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cl-agent/cl-agent/agent/exitcode"
)

type coded struct{ code int }

func (e *coded) Error() string { return fmt.Sprintf("coded %d", e.code) }
func (e *coded) ExitCode() int { return e.code }

var _ exitcode.Coder = (*coded)(nil)

func TestContractValues(t *testing.T) {
	t.Parallel()
	// The values are read by systemd (RestartPreventExitStatus=2 5) and by operators: they never change.
	for name, c := range map[string]struct{ got, want int }{
		"OK": {exitcode.OK, 0}, "Retry": {exitcode.Retry, 1}, "Config": {exitcode.Config, 2}, "Terminal": {exitcode.Terminal, 5},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", name, c.got, c.want)
		}
	}
}

func TestOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		err          error
		want         int
		wantTerminal bool
	}{
		{"NilIsOK", nil, exitcode.OK, false},
		{"PlainErrorIsRetry", errors.New("boom"), exitcode.Retry, false},
		{"ContextCanceledIsRetry", context.Canceled, exitcode.Retry, false},
		{"CoderGivesItsCode", &coded{exitcode.Terminal}, exitcode.Terminal, true},
		{"WrappedCoderGivesItsCode", fmt.Errorf("start: %w", &coded{exitcode.Config}), exitcode.Config, true},
		{"JoinedCoderGivesItsCode", errors.Join(errors.New("a"), &coded{exitcode.Terminal}), exitcode.Terminal, true},
		{"OutermostCoderWins", exitcode.New(exitcode.Retry, &coded{exitcode.Terminal}), exitcode.Retry, false},
		{"NewConfig", exitcode.New(exitcode.Config, errors.New("bad flag")), exitcode.Config, true},
		{"NewTerminal", exitcode.New(exitcode.Terminal, errors.New("denied")), exitcode.Terminal, true},
		{"NewRetry", exitcode.New(exitcode.Retry, errors.New("later")), exitcode.Retry, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := exitcode.Of(tt.err); got != tt.want {
				t.Errorf("Of(%v) = %d, want %d", tt.err, got, tt.want)
			}
			if got := exitcode.IsTerminal(tt.err); got != tt.wantTerminal {
				t.Errorf("IsTerminal(%v) = %t, want %t", tt.err, got, tt.wantTerminal)
			}
		})
	}
}

func TestNewWraps(t *testing.T) {
	t.Parallel()
	inner := errors.New("access denied")
	err := exitcode.New(exitcode.Terminal, fmt.Errorf("fetch secret: %w", inner))
	if !errors.Is(err, inner) {
		t.Errorf("errors.Is(New(...), inner) = false, want true")
	}
	if got, want := err.Error(), "fetch secret: access denied"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.Unwrap(err) == nil {
		t.Error("Unwrap(New(...)) = nil, want the wrapped error")
	}
	if exitcode.New(exitcode.Terminal, nil) != nil {
		t.Error("New(Terminal, nil) != nil, want nil")
	}
}
