package health

import (
	"context"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// funcCheck is a check made of a function.
type funcCheck struct {
	spec
	run func(ctx context.Context) Result
}

func (f *funcCheck) Run(ctx context.Context) Result { return f.run(ctx) }

var _ Check = (*funcCheck)(nil)

func newFuncCheck(name string, interval, timeout time.Duration, run func(ctx context.Context) Result) *funcCheck {
	return &funcCheck{spec: spec{name, interval, timeout}, run: run}
}

func TestRunnerAbandonsACheckThatIgnoresItsDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	var starts, fastRuns atomic.Int32
	deaf := newFuncCheck("deaf", 20*time.Millisecond, 50*time.Millisecond, func(context.Context) Result {
		starts.Add(1)
		<-release // ignores its context
		return pass("deaf", "finally")
	})
	fast := newFuncCheck("fast", 20*time.Millisecond, 50*time.Millisecond, func(context.Context) Result {
		fastRuns.Add(1)
		return pass("fast", "ok")
	})
	log, sink := newTestLogger()
	r := newRunner(log, nil, deaf, fast)
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() {
		close(release)
		cancel()
		<-done
	})

	res := waitResult(t, r, "deaf", time.Time{}, 2*time.Second, func(r Result) bool { return !r.OK })
	if !strings.Contains(res.Detail, "timed out after 50ms") {
		t.Errorf("deaf: %q; want a timeout", res.Detail)
	}
	waitResult(t, r, "deaf", time.Time{}, 2*time.Second, func(r Result) bool { return strings.Contains(r.Detail, "still going") })
	before := fastRuns.Load()
	testenv.WaitFor(t, 2*time.Second, "the other check to keep running", func() bool { return fastRuns.Load() >= before+5 })
	if n := starts.Load(); n != 1 {
		t.Errorf("the deaf check was started %d times while its first run had not returned; want 1", n)
	}
	if got := len(r.results()); got != 2 {
		t.Errorf("Results has %d entries; want 2", got)
	}
	if !strings.Contains(sink.String(), `"check failing"`) || !strings.Contains(sink.String(), `"check":"deaf"`) {
		t.Errorf("no warning logged for the failing check:\n%s", sink.String())
	}
	if n := strings.Count(sink.String(), `"check failing"`); n != 1 {
		t.Errorf("%d failing warnings; want one per change, not one per run", n)
	}
}

func TestRunnerRecoversAPanic(t *testing.T) {
	t.Parallel()
	c := newFuncCheck("boom", time.Second, time.Second, func(context.Context) Result { panic("bad index") })
	res, ok := RunOnce(context.Background(), c, nil)
	if !ok || res.OK || !strings.Contains(res.Detail, "bad index") {
		t.Errorf("RunOnce of a panicking check = %+v %v; want a failure quoting the panic", res, ok)
	}
}

func TestRunnerStopsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	blocked := make(chan struct{}, 1)
	c := newFuncCheck("slow", time.Hour, time.Hour, func(ctx context.Context) Result {
		blocked <- struct{}{}
		<-ctx.Done()
		return fail("slow", "cancelled")
	})
	r := newRunner(nil, nil, c)
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	<-blocked
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of its context ending")
	}
	if _, ok := r.result("slow"); ok {
		t.Error("a run cut short by shutdown was recorded as a result")
	}
}

func TestSkippedCheckClearsItsMetrics(t *testing.T) {
	t.Parallel()
	box := &stateBox{st: AgentState{Role: state.Active}}
	m := newMetrics(box.get)
	wallet := newFuncCheck("node_wallet_balance", time.Second, time.Second, func(context.Context) Result {
		return pass("node_wallet_balance", "ok", Sample{Metric: metricWalletBalance, Label: "0xabc", Value: 3},
			Sample{Metric: metricWalletLow, Value: 0})
	})
	c := onlyWhen(wallet, func() bool { return box.get().Role == state.Active }, "not active")
	res, _ := RunOnce(context.Background(), c, nil)
	m.observe(res)
	if got := counterValue(t, m, metricWalletBalance); got != 3 {
		t.Fatalf("wallet balance = %v; want 3", got)
	}
	box.set(func(s *AgentState) { s.Role = "standby" })
	res, _ = RunOnce(context.Background(), c, nil)
	if !res.Skipped || !res.OK || res.Detail != "not active" {
		t.Errorf("on the standby: %+v; want skipped", res)
	}
	m.observe(res)
	for _, mf := range gather(t, m) {
		switch mf.GetName() {
		case metricWalletBalance, metricWalletLow, metricCheckOK:
			if len(mf.GetMetric()) != 0 {
				t.Errorf("%s still has %d series after the check was skipped", mf.GetName(), len(mf.GetMetric()))
			}
		}
	}
}

// TestSkippedCheckRunsSoonAfterItsConditionTurns: a gated check (the node checks on a standby) runs within about
// a second of its host becoming active, not a whole interval later.
func TestSkippedCheckRunsSoonAfterItsConditionTurns(t *testing.T) {
	t.Parallel()
	var active atomic.Bool
	c := onlyWhen(newFuncCheck("node", time.Hour, time.Second, func(context.Context) Result {
		return Result{Name: "node", OK: true, Detail: "checked"}
	}), active.Load, "not active")
	r := newRunner(nil, nil, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)
	testenv.WaitFor(t, 5*time.Second, "a skipped result", func() bool {
		res, ok := r.result("node")
		return ok && res.Skipped
	})
	active.Store(true)
	testenv.WaitFor(t, 3*time.Second, "the check to run after its condition turned true (interval 1h)", func() bool {
		res, _ := r.result("node")
		return !res.Skipped
	})
}

func TestRunnerLogsEachChangeOfReasonOnce(t *testing.T) {
	t.Parallel()
	log, sink := newTestLogger()
	r := newRunner(log, nil)
	steps := []Result{
		failBecause("c", "head stuck at 7", "head stuck at 7 for 1s"),
		failBecause("c", "head stuck at 7", "head stuck at 7 for 2s"), // same reason, new figures: no line
		fail("c", "http://127.0.0.1:1: connection refused"),           // another reason: one line
		fail("c", "http://127.0.0.1:1: connection refused"),
		pass("c", "head 8"),
		fail("c", "http://127.0.0.1:1: connection refused"), // failing again after a pass: "check failing"
	}
	for _, res := range steps {
		r.record(res)
	}
	logs := sink.String()
	if n := strings.Count(logs, `"check failing"`); n != 2 {
		t.Errorf("%d \"check failing\" lines; want 2 (the first failure, and the one after passing):\n%s", n, logs)
	}
	if n := strings.Count(logs, `"check failing for another reason"`); n != 1 {
		t.Errorf("%d reason-change lines; want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, `"previous":"head stuck at 7"`) || !strings.Contains(logs, "connection refused") {
		t.Errorf("the reason-change line does not name the old and new reasons:\n%s", logs)
	}
	if n := strings.Count(logs, `"check passing again"`); n != 1 {
		t.Errorf("%d passing-again lines; want 1:\n%s", n, logs)
	}
}
