package container

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkNodeStart measures an agent start of the node against the real engine with the stand-in image
// already present (warm): from Run to the container started ("ms/start"), from Run to the node ready
// ("ms/ready"), and how long the node's secret files existed in secrets_dir ("ms/files-lifetime"). Each
// iteration is a fresh supervisor; stopping and removing the node between iterations is not timed. The node
// releases its database lease when stopped, so no iteration waits for the previous one's lease.
//
//	go test -run '^$' -bench NodeStart -benchtime 5x ./agent/container
func BenchmarkNodeStart(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newNodeEnv(b, ctx, envOptions{})
	if err := EnsureImage(ctx, e.engine, e.img.Ref(), DefaultPullInactivity, DefaultPullTimeout, e.logger); err != nil {
		b.Fatal(err)
	}
	var toStart, toReady, filesLife time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var mu sync.Mutex
		var startedAt, readyAt, written, shredded time.Time
		ready := make(chan struct{})
		o := e.options()
		o.ReadyPoll = DefaultReadyPoll // as in production
		o.OnStatus = func(st Status) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case st.State == StateRunning && startedAt.IsZero():
				startedAt = time.Now()
			case st.State == StateReady && readyAt.IsZero():
				readyAt = time.Now()
				close(ready)
			}
		}
		s, err := NewSupervisor(o)
		if err != nil {
			b.Fatal(err)
		}
		s.onFiles = func(w, sh time.Time) { mu.Lock(); written, shredded = w, sh; mu.Unlock() }
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.StartTimer()
		begin := time.Now()
		go func() { done <- s.Run(runCtx) }()
		select {
		case <-ready:
		case err := <-done:
			b.Fatalf("Run returned before the node was ready: %v (status %+v)", err, s.Status())
		case <-time.After(2 * time.Minute):
			b.Fatalf("the node was not ready within 2m: %+v", s.Status())
		}
		b.StopTimer()
		mu.Lock()
		toStart += startedAt.Sub(begin)
		toReady += readyAt.Sub(begin)
		filesLife += shredded.Sub(written)
		mu.Unlock()
		stop()
		if err := <-done; err != nil {
			b.Fatalf("Run: %v", err)
		}
	}
	perOp := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(perOp(toStart), "ms/start")
	b.ReportMetric(perOp(toReady), "ms/ready")
	b.ReportMetric(perOp(filesLife), "ms/files-lifetime")
}
