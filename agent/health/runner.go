package health

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// runner runs each check in its own goroutine on its own interval, each run bounded by the check's deadline,
// and keeps the last result of each. Nothing waits on a check: a run that outlives its deadline is recorded as
// timed out and left behind, and the check is not started again until that run has returned.
type runner struct {
	checks  []Check
	log     *zap.Logger
	observe func(Result) // called with every result (metrics); must not block
	mu      sync.Mutex
	last    map[string]Result
}

// newRunner returns a runner for checks. observe (may be nil) sees every result, in the check's goroutine.
func newRunner(log *zap.Logger, observe func(Result), checks ...Check) *runner {
	if log == nil {
		log = zap.NewNop()
	}
	if observe == nil {
		observe = func(Result) {}
	}
	return &runner{checks: checks, log: log, observe: observe, last: map[string]Result{}}
}

// run runs every check until ctx ends; each runs at once, then every Interval. On return it closes what the
// checks hold open between runs.
func (r *runner) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range r.checks {
		wg.Go(func() { r.loop(ctx, c) })
	}
	wg.Wait()
	for _, c := range r.checks {
		_ = closeCheck(c)
	}
}

// results is the last result of every check that has run, by name.
func (r *runner) results() []Result {
	r.mu.Lock()
	out := make([]Result, 0, len(r.last))
	for _, res := range r.last {
		out = append(out, res)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// result is the last result of the named check.
func (r *runner) result(name string) (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.last[name]
	return res, ok
}

// skippedRecheck is how soon a skipped check (a gated one whose condition was false, e.g. the node checks on a
// standby) looks again, so that it runs within a second of its condition turning true, not an interval later.
const skippedRecheck = time.Second

func (r *runner) loop(ctx context.Context, c Check) {
	next := time.NewTimer(0)
	defer next.Stop()
	running := make(chan struct{}) // closed when the last run returned
	close(running)
	var started time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		wait := c.Interval()
		switch {
		case isClosed(running):
			running, started = make(chan struct{}), time.Now()
			res, ok := RunOnce(ctx, c, running)
			if !ok { // ctx ended: shutting down, not a result
				return
			}
			r.record(res)
			if res.Skipped {
				wait = min(wait, skippedRecheck)
			}
		case time.Since(started) > 2*c.Timeout():
			// The abandoned run ignores its context: say so (its timeout result is already recorded).
			r.record(Result{Name: c.Name(), At: time.Now(), reason: "timed out", // the same failure, continuing
				Detail: fmt.Sprintf("the run started %s ago is still going, past its deadline of %s", time.Since(started).Round(time.Millisecond), c.Timeout())})
		}
		next.Reset(wait)
	}
}

// RunOnce runs c with its deadline and returns its result, or a timeout result once the deadline passes even if
// c ignores its context. done (may be nil) is closed when c.Run returns. ok is false when parent ended first.
func RunOnce(parent context.Context, c Check, done chan struct{}) (res Result, ok bool) {
	ctx, cancel := context.WithTimeout(parent, c.Timeout())
	defer cancel()
	start := time.Now()
	out := make(chan Result, 1) // buffered: an abandoned run can still hand in its result and end
	go func() {
		if done != nil {
			defer close(done)
		}
		defer func() {
			if p := recover(); p != nil {
				out <- fail(c.Name(), fmt.Sprintf("the check panicked: %v", p))
			}
		}()
		out <- c.Run(ctx)
	}()
	select {
	case res = <-out:
	case <-ctx.Done():
		if parent.Err() != nil {
			return Result{}, false
		}
		res = timedOut(c.Name(), targetOf(c), c.Timeout())
	}
	if parent.Err() != nil && !res.OK {
		return Result{}, false
	}
	res.Name, res.At, res.Took = c.Name(), start, time.Since(start)
	return res, true
}

// record keeps res, feeds the metrics and logs a change: passing to failing, failing for another reason, and
// failing to passing. A check failing the same way run after run is logged once.
func (r *runner) record(res Result) {
	r.mu.Lock()
	prev, seen := r.last[res.Name]
	r.last[res.Name] = res
	r.mu.Unlock()
	r.observe(res)
	switch {
	case res.Skipped: // not run: nothing changed worth a line
	case !res.OK && (!seen || prev.OK):
		r.log.Warn("check failing", zap.String("check", res.Name), zap.String("detail", res.Detail))
	case !res.OK && res.failureReason() != prev.failureReason():
		r.log.Warn("check failing for another reason", zap.String("check", res.Name), zap.String("detail", res.Detail),
			zap.String("previous", prev.failureReason()))
	case res.OK && seen && !prev.OK:
		r.log.Info("check passing again", zap.String("check", res.Name), zap.String("detail", res.Detail))
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
