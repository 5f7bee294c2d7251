package health

import (
	"context"
	"time"
)

// Check is one probe of something the node depends on. Run must honour ctx: the Runner gives it a deadline of
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
}

// Sample is one figure a check measured: Metric is one of the Metric* names, Label the value of that metric's
// one label ("" for an unlabelled metric).
type Sample struct {
	Metric string  `json:"metric"`
	Label  string  `json:"label,omitempty"`
	Value  float64 `json:"value"`
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

// gated runs a check only while cond holds (e.g. node checks only on the active host); otherwise the result is
// Skipped with why as its detail.
type gated struct {
	Check
	cond func() bool
	why  string
}

// OnlyWhen returns c run only while cond reports true; otherwise its result is Skipped with detail why.
func OnlyWhen(c Check, cond func() bool, why string) Check {
	return gated{Check: c, cond: cond, why: why}
}

func (g gated) Run(ctx context.Context) Result {
	if !g.cond() {
		return Result{Name: g.Name(), OK: true, Skipped: true, Detail: g.why}
	}
	return g.Check.Run(ctx)
}
