package main

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// nodeState is what the HTTP side reads of the node's progress; safe for concurrent use.
type nodeState struct {
	started   time.Time
	lockHeld  atomic.Bool
	ready     atomic.Bool
	dbHealthy atomic.Bool
	// chainModelled: standin-dial-chain asked for the chain client to be modelled (chainClient); chainConns
	// counts its open connections. Unmodelled, the chain counts as connected.
	chainModelled atomic.Bool
	chainConns    atomic.Int32

	refreshes     prometheus.Counter
	refreshErrors prometheus.Counter
	registry      *prometheus.Registry
}

func newNodeState() *nodeState {
	s := &nodeState{
		started: time.Now(),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "standin_lock_refreshes_total", Help: "Successful refreshes (or checks) of the database lock."}),
		refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "standin_lock_refresh_errors_total", Help: "Failed refreshes (or checks) of the database lock."}),
		registry: prometheus.NewRegistry(),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	s.registry.MustRegister(
		s.refreshes, s.refreshErrors,
		gauge("standin_lock_held", "1 while this node holds the database lock.", func() float64 { return b2f(s.lockHeld.Load()) }),
		gauge("standin_ready", "1 once the node is ready (/readyz 200).", func() float64 { return b2f(s.ready.Load()) }),
		gauge("uptime_seconds", "Seconds since the node started.", func() float64 { return time.Since(s.started).Seconds() }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	s.dbHealthy.Store(true)
	return s
}

// chainConnected is the node's view of its chain client: connected to at least one primary node.
func (s *nodeState) chainConnected() bool {
	return !s.chainModelled.Load() || s.chainConns.Load() > 0
}

func (s *nodeState) refreshed() {
	s.dbHealthy.Store(true)
	s.refreshes.Inc()
}

func (s *nodeState) refreshFailed() {
	s.dbHealthy.Store(false)
	s.refreshErrors.Inc()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
