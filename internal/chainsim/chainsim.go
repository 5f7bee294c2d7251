package chainsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options shape a Server. Zero values take the defaults.
type Options struct {
	// Addr is where to listen. Default "127.0.0.1:0" (a free loopback port).
	Addr string
	// ChainID is eth_chainId's answer. Default 1 (Ethereum mainnet).
	ChainID uint64
	// Head is the first head. Default 1.
	Head uint64
}

// Server is a running simulated chain client. Its controls are safe for concurrent use.
type Server struct {
	// URL is the HTTP JSON-RPC endpoint (http://127.0.0.1:PORT); WSURL the WebSocket one (ws://127.0.0.1:PORT).
	URL, WSURL string

	srv     *http.Server
	served  chan struct{}
	closing chan struct{} // closed by Close: releases stalled requests and ends subscriptions
	once    sync.Once

	mu         sync.Mutex
	chainID    uint64
	head       uint64
	stalled    chan struct{} // non-nil while stalled; closed by Resume
	rpcErr     *RPCError
	httpStatus int
	calls      map[string]int
	subs       map[*subscriber]struct{}
	held       int // requests waiting on a stall
}

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message) }

// Start listens and serves until Close.
func Start(o Options) (*Server, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.ChainID == 0 {
		o.ChainID = 1
	}
	if o.Head == 0 {
		o.Head = 1
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("chainsim: listen on %s: %w", o.Addr, err)
	}
	s := &Server{
		URL: "http://" + ln.Addr().String(), WSURL: "ws://" + ln.Addr().String(),
		served: make(chan struct{}), closing: make(chan struct{}),
		chainID: o.ChainID, head: o.Head, calls: map[string]int{}, subs: map[*subscriber]struct{}{},
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// StartT starts a server for a test and closes it in t.Cleanup; it fails the test if the server cannot start.
func StartT(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Close releases stalled requests, ends subscriptions and stops the server (bounded to 5s).
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.srv.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = s.srv.Close()
		}
		<-s.served
	})
	return err
}

// Head is the current head.
func (s *Server) Head() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// SetHead sets the head. Subscribers get a newHeads notification for each block above the old head.
func (s *Server) SetHead(n uint64) {
	s.mu.Lock()
	old := s.head
	s.head = n
	subs := make([]*subscriber, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for b := old + 1; b <= n && n > old; b++ {
		for _, sub := range subs {
			sub.notify(b)
		}
	}
}

// Advance moves the head up by n blocks and returns the new head.
func (s *Server) Advance(n uint64) uint64 {
	s.mu.Lock()
	head := s.head + n
	s.mu.Unlock()
	s.SetHead(head)
	return head
}

// Stall makes every request and WebSocket handshake, and every call on an open WebSocket, wait without an
// answer until Resume or Close.
func (s *Server) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled == nil {
		s.stalled = make(chan struct{})
	}
}

// Resume answers the stalled requests and ends the stall.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled != nil {
		close(s.stalled)
		s.stalled = nil
	}
}

// FailWith makes every call answer the JSON-RPC error {code, message} until Heal.
func (s *Server) FailWith(code int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rpcErr = &RPCError{Code: code, Message: message}
}

// FailHTTP makes every HTTP request (and WebSocket handshake) answer status with no JSON-RPC body until Heal.
func (s *Server) FailHTTP(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.httpStatus = status
}

// Heal ends FailWith and FailHTTP.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rpcErr, s.httpStatus = nil, 0
}

// Held is how many requests (and WebSocket messages) a stall holds right now.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Calls is how many calls of method the server has handled (a stalled call counts once the stall ends).
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Subscribers is how many newHeads subscriptions are open.
func (s *Server) Subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// waitStall blocks while the server is stalled. It returns false when ctx ends or the server closes first.
func (s *Server) waitStall(ctx context.Context) bool {
	for {
		s.mu.Lock()
		stalled := s.stalled
		s.mu.Unlock()
		if stalled == nil {
			return true
		}
		if !s.hold(ctx, stalled) {
			return false
		}
	}
}

// hold waits for one stall to end, counted in Held.
func (s *Server) hold(ctx context.Context, stalled chan struct{}) bool {
	s.mu.Lock()
	s.held++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.held--
		s.mu.Unlock()
	}()
	select {
	case <-stalled:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.waitStall(r.Context()) {
		return
	}
	s.mu.Lock()
	status := s.httpStatus
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	switch {
	case r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		s.serveWS(w, r)
	case r.Method == http.MethodPost:
		s.servePost(w, r)
	default:
		http.Error(w, "JSON-RPC: POST, or GET with a WebSocket upgrade", http.StatusMethodNotAllowed)
	}
}
