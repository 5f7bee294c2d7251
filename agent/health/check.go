package health

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Check is one probe of something the node depends on. Run must honour ctx: the runner gives it a deadline of
// Timeout and stops waiting for it then, whatever it does.
type Check interface {
	Name() string
	Interval() time.Duration
	Timeout() time.Duration
	Run(ctx context.Context) Result
}

// Result is the outcome of one run of a check: what `cl-agent status` prints and the metrics are made of.
type Result struct {
	Name    string        `json:"name"`
	OK      bool          `json:"ok"`
	Skipped bool          `json:"skipped,omitempty"` // not run, e.g. a node check on the standby; OK is true
	Detail  string        `json:"detail"`            // one line: what was seen, or why it failed
	At      time.Time     `json:"at"`                // when the run began
	Took    time.Duration `json:"took"`
	Samples []Sample      `json:"samples,omitempty"` // figures for the metrics

	// reason is what a failure is about, without the figures that change from run to run ("head stuck at 7"
	// while Detail says for how long): the runner logs a failing check again when its reason changes. Empty:
	// Detail is the reason.
	reason string
}

// failureReason is what a failed result is about, for telling a new failure from the same one seen again.
func (r Result) failureReason() string {
	if r.reason != "" {
		return r.reason
	}
	return r.Detail
}

// Sample is one figure a check measured: Metric is one of the cl_agent_… names (the metric* constants), Label
// the value of that metric's own label ("" for an unlabelled metric). ChainID and Node are the chain client a
// chain figure is about (the labels chain_id and node of cl_agent_chain_head and cl_agent_rpc_latency_seconds);
// "" for every other metric.
type Sample struct {
	Metric  string  `json:"metric"`
	Label   string  `json:"label,omitempty"`
	ChainID string  `json:"chain_id,omitempty"`
	Node    string  `json:"node,omitempty"`
	Value   float64 `json:"value"`
}

// spec holds what every check has: a name, an interval and a deadline.
type spec struct {
	name     string
	interval time.Duration
	timeout  time.Duration
}

func (s spec) Name() string            { return s.name }
func (s spec) Interval() time.Duration { return s.interval }
func (s spec) Timeout() time.Duration  { return s.timeout }

// pass and fail build results; the runner fills in At and Took.
func pass(name, detail string, samples ...Sample) Result {
	return Result{Name: name, OK: true, Detail: detail, Samples: samples}
}

func fail(name, detail string, samples ...Sample) Result {
	return Result{Name: name, OK: false, Detail: detail, Samples: samples}
}

// failBecause is fail with a reason that stays the same while the detail's figures change.
func failBecause(name, reason, detail string, samples ...Sample) Result {
	return Result{Name: name, OK: false, Detail: detail, Samples: samples, reason: reason}
}

// timedOut is the result of a run that had no answer within bound: the runner's when a check overruns its
// deadline, and the check's own when it sees its context end, so both read (and log) the same.
func timedOut(name, target string, bound time.Duration) Result {
	detail := fmt.Sprintf("timed out after %s", bound)
	if target != "" {
		detail += " waiting for " + target
	}
	return failBecause(name, "timed out", detail)
}

// targeted is a check that talks to one place (a URL, shown without credentials): timeouts name it.
type targeted interface{ target() string }

func targetOf(c Check) string {
	if t, ok := c.(targeted); ok {
		return t.target()
	}
	return ""
}

// gated runs a check only while cond holds (e.g. node checks only on the active host); otherwise the result is
// Skipped with why as its detail.
type gated struct {
	Check
	cond func() bool
	why  string
}

// onlyWhen returns c run only while cond reports true; otherwise its result is Skipped with detail why.
func onlyWhen(c Check, cond func() bool, why string) Check {
	return gated{Check: c, cond: cond, why: why}
}

func (g gated) target() string { return targetOf(g.Check) }

// Close closes the wrapped check if it holds something open.
func (g gated) Close() error { return closeCheck(g.Check) }

func (g gated) Run(ctx context.Context) Result {
	if !g.cond() {
		return Result{Name: g.Name(), OK: true, Skipped: true, Detail: g.why}
	}
	return g.Check.Run(ctx)
}

// closeCheck closes c if it holds something open between runs (the WebSocket check's subscription).
func closeCheck(c Check) error {
	if cl, ok := c.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}
