package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Server timeouts: a slow or idle client cannot hold the endpoint's resources.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	scrapeTimeout     = 20 * time.Second // a gather that takes longer answers 503
	shutdownBudget    = 2 * time.Second
)

// Handler answers /healthz, /readyz and /metrics. The probes read only state(), never a check, so a hung check
// cannot slow them down. Bodies of the probes are one line: "ok" or the reason.
func Handler(state func() AgentState, beatBound time.Duration, g prometheus.Gatherer, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := Live(state(), time.Now(), beatBound)
		probeReply(w, ok, reason)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := Ready(state())
		probeReply(w, ok, reason)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(log), ErrorHandling: promhttp.ContinueOnError, Timeout: scrapeTimeout}))
	return mux
}

func probeReply(w http.ResponseWriter, ok bool, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	fmt.Fprintln(w, reason)
}

// Server serves a handler on an address until its context ends.
type Server struct {
	addr string
	srv  *http.Server
	ln   net.Listener
}

// NewServer returns a server for h on addr (health.listen, default 127.0.0.1:9180).
func NewServer(addr string, h http.Handler) *Server {
	return &Server{addr: addr, srv: &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout: readHeaderTimeout, WriteTimeout: writeTimeout, IdleTimeout: idleTimeout}}
}

// Listen binds the address, so a port in use fails before anything runs. Serve calls it when needed.
func (s *Server) Listen() error {
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("health endpoint: listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (host:port), or the configured one before Listen.
func (s *Server) Addr() string {
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Serve answers until ctx ends, then shuts down within a small budget. A cancelled ctx is not an error.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownBudget)
		defer cancel()
		if s.srv.Shutdown(sctx) != nil {
			_ = s.srv.Close()
		}
	}()
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return fmt.Errorf("health endpoint on %s: %w", s.Addr(), err)
}
