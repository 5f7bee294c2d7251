package health

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
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

// handler answers /healthz, /readyz and /metrics. The probes read only state(), never a check, so a hung check
// cannot slow them down. Bodies of the probes are one line: "ok" or the reason. With a metricsToken, /metrics
// answers only "Authorization: Bearer <metricsToken>" (401 otherwise); the probes stay open for the load balancer.
func handler(state func() AgentState, beatBound time.Duration, g prometheus.Gatherer, metricsToken string, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := Live(state(), time.Now(), beatBound)
		probeReply(w, ok, reason)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := ready(state())
		probeReply(w, ok, reason)
	})
	mux.Handle("GET /metrics", requireBearer(metricsToken, promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(log), ErrorHandling: promhttp.ContinueOnError, Timeout: scrapeTimeout})))
	return mux
}

// requireBearer lets through only requests carrying "Authorization: Bearer <token>"; an empty token lets all
// through. Both sides are hashed before the constant-time compare, so neither the bytes nor the length of the
// token leak through timing. The token is never logged: a refusal says only that it was missing or wrong.
func requireBearer(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cl-agent metrics"`)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, "a bearer token is required (health.metrics_token_file)")
			return
		}
		next.ServeHTTP(w, r)
	})
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

// server serves a handler on an address until its context ends.
type server struct {
	addr string
	srv  *http.Server
	ln   net.Listener
}

// newServer returns a server for h on addr (health.listen, default 127.0.0.1:9180).
func newServer(addr string, h http.Handler) *server {
	return &server{addr: addr, srv: &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout: readHeaderTimeout, WriteTimeout: writeTimeout, IdleTimeout: idleTimeout}}
}

// listen binds the address, so a port in use fails before anything runs. serve calls it when needed.
func (s *server) listen() error {
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

// boundAddr is the bound address (host:port), or the configured one before listen.
func (s *server) boundAddr() string {
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// serve answers until ctx ends, then shuts down within a small budget. A cancelled ctx is not an error.
func (s *server) serve(ctx context.Context) error {
	if err := s.listen(); err != nil {
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
	return fmt.Errorf("health endpoint on %s: %w", s.boundAddr(), err)
}
