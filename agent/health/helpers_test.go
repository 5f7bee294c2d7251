package health

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// testContext is bounded so a hung test fails instead of stalling the package.
func testContext(t *testing.T, bound time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	return ctx
}

// logSink captures a zap logger's JSON output.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) Sync() error { return nil }

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func newTestLogger() (*zap.Logger, *logSink) {
	sink := &logSink{}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), sink, zapcore.DebugLevel)
	return zap.New(core), sink
}

// stateBox is a fake daemon state.
type stateBox struct {
	mu sync.Mutex
	st AgentState
}

func (b *stateBox) get() AgentState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

func (b *stateBox) set(f func(*AgentState)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.st)
}

// waitResult waits until the runner holds a result of check newer than after that satisfies cond.
func waitResult(t *testing.T, r *runner, check string, after time.Time, bound time.Duration, cond func(Result) bool) Result {
	t.Helper()
	var got Result
	testenv.WaitFor(t, bound, "a result of "+check, func() bool {
		res, ok := r.result(check)
		if ok && res.At.After(after) && cond(res) {
			got = res
			return true
		}
		if ok {
			got = res
		}
		return false
	})
	return got
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
