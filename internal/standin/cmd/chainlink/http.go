package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

const sessionCookie = "clsession"

// server is the node's HTTP side: probes, metrics and the few API calls the agent's health checks use.
type server struct {
	state   *nodeState
	rootDir string
	creds   apiCredentials
	users   userStore
	chainID string
	locked  bool // a database lock is configured
	log     *zap.Logger

	mu       sync.Mutex
	sessions map[string]time.Time // token -> created
}

func newServer(state *nodeState, cfg nodeConfig, creds apiCredentials, u userStore, log *zap.Logger) *server {
	return &server{state: state, rootDir: cfg.RootDir, creds: creds, users: u, chainID: cfg.ChainID,
		locked: cfg.LockMode != lockNone, log: log, sessions: map[string]time.Time{}}
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /health", s.health)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.state.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /sessions", s.login)
	mux.HandleFunc("DELETE /sessions", s.logout)
	mux.HandleFunc("GET /v2/keys/eth", s.authenticated(s.ethKeys))
	mux.HandleFunc("GET /v2/pipeline/runs", s.authenticated(s.pipelineRuns))
	mux.HandleFunc("PATCH /v2/user/password", s.authenticated(s.changePassword))
	return mux
}

// check is one entry of /health and /readyz.
type check struct {
	Name   string
	OK     bool
	Output string
}

func (s *server) checks() []check {
	cs := []check{{Name: "Database", OK: s.state.dbHealthy.Load()}}
	if !cs[0].OK {
		cs[0].Output = "the last database call failed"
	}
	if s.locked {
		held := s.state.lockHeld.Load()
		cs = append(cs, check{Name: "DatabaseLock", OK: held})
		if !held {
			cs[len(cs)-1].Output = "the database lock is not held"
		}
	}
	cs = append(cs, check{Name: "EVM." + s.chainID, OK: true})
	// The real node's check of its chain connection (headListener.HealthReport), failing while no primary node is
	// connected. The real one also fails for some 15 s after every start until heads arrive: not modelled.
	listener := check{Name: "EVM." + s.chainID + ".HeadTracker.HeadListener", OK: s.state.chainConnected()}
	if !listener.OK {
		listener.Output = "Listener is not connected"
	}
	cs = append(cs, listener)
	name, err := failingCheck(s.rootDir)
	if err != nil {
		cs = append(cs, check{Name: faultHealthFail, Output: err.Error()})
	}
	if name != "" {
		found := false
		for i := range cs {
			if cs[i].Name == name {
				cs[i].OK, cs[i].Output, found = false, "standin: injected failure", true
			}
		}
		if !found {
			cs = append(cs, check{Name: name, Output: "standin: injected failure"})
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs
}

// health is 200 when every check passes and 207 (Multi-Status) when any fails, as the node does.
func (s *server) health(w http.ResponseWriter, _ *http.Request) {
	cs := s.checks()
	code := http.StatusOK
	for _, c := range cs {
		if !c.OK {
			code = http.StatusMultiStatus
		}
	}
	writeJSON(w, code, checksDocument(cs))
}

// readyz is 200 once the node holds its lock and finished starting, 503 before (and forever with standin-unready).
func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	ready := s.state.ready.Load()
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, checksDocument([]check{{Name: "Startup", OK: ready}}))
}

func checksDocument(cs []check) map[string]any {
	data := make([]map[string]any, 0, len(cs))
	for _, c := range cs {
		status := "passing"
		if !c.OK {
			status = "failing"
		}
		data = append(data, map[string]any{"type": "checks", "id": c.Name,
			"attributes": map[string]any{"name": c.Name, "status": status, "output": c.Output}})
	}
	return map[string]any{"data": data}
}

// login checks the posted credentials against the user in the database and sets the session cookie.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "malformed session request")
		return
	}
	ok, err := s.users.check(r.Context(), req.Email, req.Password)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "database unavailable")
		return
	}
	if !ok {
		s.log.Info("login failed")
		writeError(w, http.StatusUnauthorized, "Invalid email or password")
		return
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	s.sessions[token] = time.Now()
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"type": "session", "id": "sessionID",
		"attributes": map[string]any{"authenticated": true}}})
}

// changePassword is PATCH /v2/user/password: the old password must be the stored one.
func (s *server) changePassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OldPassword string `json:"oldPassword"`
		NewPassword string `json:"newPassword"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.NewPassword == "" {
		writeError(w, http.StatusUnprocessableEntity, "malformed change password request")
		return
	}
	ok, err := s.users.change(r.Context(), s.creds.Email, req.OldPassword, req.NewPassword)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, "database unavailable")
	case !ok:
		writeError(w, http.StatusConflict, "old password does not match")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"type": "users", "id": s.creds.Email}})
	}
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"type": "session", "id": "sessionID",
		"attributes": map[string]any{"authenticated": false}}})
}

func (s *server) authenticated(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		ok := false
		if err == nil {
			s.mu.Lock()
			_, ok = s.sessions[c.Value]
			s.mu.Unlock()
		}
		if !ok {
			writeError(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		next(w, r)
	}
}

// ethKeys lists the node's ETH keys with balances from standin-balances (read on every request).
func (s *server) ethKeys(w http.ResponseWriter, _ *http.Request) {
	keys, err := readBalances(s.rootDir)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	// Without its chain client the node knows no balance: null, as the real node's API gives it. standin-balances
	// stands for what the chain says, so it is given whatever the connection.
	var ethBalance, linkBalance any = nil, nil
	known := s.state.chainConnected() || exists(filepath.Join(s.rootDir, fileBalances))
	ts := s.state.started.UTC().Format(time.RFC3339)
	data := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		if known {
			ethBalance, linkBalance = k.ETHBalance, "0"
		}
		data = append(data, map[string]any{"type": "eTHKeys", "id": k.Address, "attributes": map[string]any{
			"address": k.Address, "evmChainID": s.chainID, "nextNonce": 0, "ethBalance": ethBalance,
			"linkBalance": linkBalance, "disabled": false, "createdAt": ts, "updatedAt": ts}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
}

// completedRuns is how many successful runs the stand-in reports besides the errored ones.
const completedRuns = 5

// pipelineRuns lists the newest runs, the standin-errored-runs count of them errored, newest first.
func (s *server) pipelineRuns(w http.ResponseWriter, r *http.Request) {
	size := 25
	if v := r.URL.Query().Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid size %q", v))
			return
		}
		size = n
	}
	errored, err := erroredRuns(s.rootDir)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	total := errored + completedRuns
	now := time.Now().UTC()
	data := []map[string]any{}
	for i := 0; i < total && i < size; i++ {
		id := total - i
		at := now.Add(-time.Duration(i) * time.Minute).Format(time.RFC3339)
		attrs := map[string]any{"inputs": map[string]any{}, "createdAt": at, "finishedAt": at,
			"pipelineSpec": map[string]any{"id": 1, "jobID": 1, "dotDagSource": ""}, "taskRuns": []any{}}
		if i < errored {
			msg := "standin: injected run error"
			attrs["state"], attrs["outputs"] = "errored", []any{nil}
			attrs["errors"], attrs["allErrors"], attrs["fatalErrors"] = []any{msg}, []any{msg}, []any{msg}
		} else {
			attrs["state"], attrs["outputs"] = "completed", []any{"1"}
			attrs["errors"], attrs["allErrors"], attrs["fatalErrors"] = []any{nil}, []any{}, []any{nil}
		}
		data = append(data, map[string]any{"type": "pipelineRun", "id": strconv.Itoa(id), "attributes": attrs})
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": map[string]any{"count": total}})
}

func writeError(w http.ResponseWriter, code int, detail string) {
	writeJSON(w, code, map[string]any{"errors": []any{map[string]any{"detail": detail}}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
