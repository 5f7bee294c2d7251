package health

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/logging"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// startService runs a Service on a free port until the test ends and returns its base URL.
func startService(t *testing.T, o Options) (*Service, string) {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
	return svc, "http://" + svc.boundAddr()
}

// probe returns the status and body of GET url, bounded by bound.
func probe(t *testing.T, url string, bound time.Duration) (int, string) {
	t.Helper()
	c := http.Client{Timeout: bound}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestProbes(t *testing.T) {
	t.Parallel()
	box := &stateBox{}
	_, base := startService(t, Options{State: box.get, BeatBound: time.Second})
	now := time.Now
	cases := []struct {
		name       string
		state      AgentState
		healthz    int
		readyz     int
		bodyHas    string // in the failing probe's body
		readyzBody string
	}{
		{name: "StandbyIsLiveButNotReady", state: AgentState{Role: "standby", LastBeat: now()},
			healthz: 200, readyz: 503, readyzBody: "standby"},
		{name: "ActiveAndReadyServes", state: AgentState{Role: state.Active, NodeUp: true, NodeReady: true, LockHeld: true, LastBeat: now()},
			healthz: 200, readyz: 200, readyzBody: "ok"},
		{name: "ActiveWithUnreadyNodeIsNotReady", state: AgentState{Role: state.Active, NodeUp: true, LastBeat: now()},
			healthz: 200, readyz: 503, readyzBody: "node is not ready"},
		{name: "StartingIsNotReady", state: AgentState{Role: "starting", LastBeat: now()},
			healthz: 200, readyz: 503, readyzBody: "starting"},
		{name: "FencingFailsHealthz", state: AgentState{Role: state.Fencing, NodeUp: true, NodeReady: true, LastBeat: now()},
			healthz: 503, readyz: 503, bodyHas: "fencing", readyzBody: "fencing"},
		{name: "StaleBeatFailsHealthz", state: AgentState{Role: state.Active, NodeReady: true, LastBeat: now().Add(-5 * time.Second)},
			healthz: 503, readyz: 200, bodyHas: "last ticked", readyzBody: "ok"},
		{name: "NoBeatYetFailsHealthz", state: AgentState{Role: "standby"},
			healthz: 503, readyz: 503, bodyHas: "not ticked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.state.LastBeat.After(time.Now().Add(-time.Second)) {
				tc.state.LastBeat = time.Now() // fresh at the moment of the probe
			}
			box.set(func(s *AgentState) { *s = tc.state })
			code, body := probe(t, base+"/healthz", 2*time.Second)
			if code != tc.healthz {
				t.Errorf("/healthz = %d %q; want %d", code, body, tc.healthz)
			}
			if strings.Count(body, "\n") != 1 {
				t.Errorf("/healthz body %q: want one line", body)
			}
			if tc.bodyHas != "" && !strings.Contains(body, tc.bodyHas) {
				t.Errorf("/healthz body %q: want it to say %q", body, tc.bodyHas)
			}
			code, body = probe(t, base+"/readyz", 2*time.Second)
			if code != tc.readyz {
				t.Errorf("/readyz = %d %q; want %d", code, body, tc.readyz)
			}
			if tc.readyzBody != "" && !strings.Contains(body, tc.readyzBody) {
				t.Errorf("/readyz body %q: want it to say %q", body, tc.readyzBody)
			}
		})
	}
}

func TestMetricsEndpointFollowsState(t *testing.T) {
	t.Parallel()
	box := &stateBox{st: AgentState{Role: state.Active, LockEnabled: true, LockHeld: true, NodeUp: true, NodeReady: true, LastBeat: time.Now()}}
	svc, base := startService(t, Options{State: box.get})
	svc.Metrics().RecordFailover()
	svc.Metrics().RecordSecretFetch(nil, 120*time.Millisecond)
	svc.Metrics().RecordSecretFetch(context.DeadlineExceeded, 2*time.Second)
	svc.Metrics().SetImage("smartcontract/chainlink", "2.10.0", "sha256:0123")
	svc.Metrics().SetImage("smartcontract/chainlink", "2.11.0", "sha256:4567")
	code, body := probe(t, base+"/metrics", 5*time.Second)
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`cl_agent_role{role="active"} 1`, `cl_agent_role{role="standby"} 0`,
		"cl_agent_lock_held 1", "cl_agent_node_up 1", "cl_agent_node_ready 1", "cl_agent_active_node 1",
		"cl_agent_failovers_total 1",
		`cl_agent_secret_fetches_total{result="ok"} 1`, `cl_agent_secret_fetches_total{result="error"} 1`,
		"cl_agent_secret_fetch_duration_seconds_count 2",
		`cl_agent_image_info{digest="sha256:4567",repository="smartcontract/chainlink",tag="2.11.0"} 1`,
		`cl_agent_host_memory_used_ratio`, `cl_agent_check_ok{check="host"} 1`,
	} {
		if want == `cl_agent_check_ok{check="host"} 1` || want == "cl_agent_host_memory_used_ratio" {
			testenv.WaitFor(t, 5*time.Second, "the host check's metrics", func() bool {
				_, body = probe(t, base+"/metrics", 5*time.Second)
				return strings.Contains(body, want)
			})
		}
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "2.10.0") {
		t.Error("/metrics still shows the replaced image 2.10.0")
	}
	box.set(func(s *AgentState) { s.Role, s.LockHeld, s.NodeUp, s.NodeReady = "standby", false, false, false })
	_, body = probe(t, base+"/metrics", 5*time.Second)
	for _, want := range []string{`cl_agent_role{role="standby"} 1`, "cl_agent_lock_held 0", "cl_agent_active_node 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("after stepping down, /metrics lacks %q", want)
		}
	}
}

func TestListenFailsOnUsedPort(t *testing.T) {
	t.Parallel()
	box := &stateBox{}
	svc, _ := startService(t, Options{State: box.get})
	other, err := New(Options{State: box.get, Listen: svc.boundAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Listen(); err == nil || !strings.Contains(err.Error(), svc.boundAddr()) {
		t.Errorf("Listen on a used port = %v; want an error naming %s", err, svc.boundAddr())
	}
}

// TestMetricsBearerToken: with health.metrics_token_file, /metrics answers 401 unless the request carries the
// token as a bearer; /healthz and /readyz stay open for the load balancer; the token is never logged.
func TestMetricsBearerToken(t *testing.T) {
	t.Parallel()
	const token = "metrics-token-0123456789abcdef"
	path := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := logging.New(&logs, "debug")
	box := &stateBox{st: AgentState{Role: state.Active, LockHeld: true, NodeUp: true, NodeReady: true, LastBeat: time.Now()}}
	_, base := startService(t, Options{State: box.get, Log: log, MetricsTokenFile: path})
	cases := []struct {
		name, path, auth string
		want             int
	}{
		{"NoHeaderRefused", "/metrics", "", 401},
		{"WrongTokenRefused", "/metrics", "Bearer not-the-token", 401},
		{"PrefixRefused", "/metrics", "Bearer " + token[:10], 401},
		{"LongerRefused", "/metrics", "Bearer " + token + "x", 401},
		{"BasicSchemeRefused", "/metrics", "Basic " + token, 401},
		{"BareTokenRefused", "/metrics", token, 401},
		{"BearerAccepted", "/metrics", "Bearer " + token, 200},
		{"SchemeCaseIgnored", "/metrics", "bearer " + token, 200},
		{"HealthzOpen", "/healthz", "", 200},
		{"ReadyzOpen", "/readyz", "", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			box.set(func(s *AgentState) { s.LastBeat = time.Now() })
			req, err := http.NewRequest(http.MethodGet, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			c := http.Client{Timeout: 5 * time.Second}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s = %d %q, want %d", tc.path, resp.StatusCode, body, tc.want)
			}
			if tc.want == 401 {
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer challenge: %q", resp.Header.Get("WWW-Authenticate"))
				}
				if strings.Contains(string(body), token[:10]) {
					t.Errorf("the 401 body shows the token: %q", body)
				}
			}
			if tc.want == 200 && tc.path == "/metrics" && !strings.Contains(string(body), "cl_agent_") {
				t.Errorf("/metrics body has no agent metric:\n%s", body)
			}
		})
	}
	log.Warn("a line that mentions the token by accident", zap.String("token", token))
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token reached the log:\n%s", logs.String())
	}
}

// TestMetricsTokenFileRefusedAtStart: a token file that turned world-readable after the config was loaded stops
// the service from starting; the error names the key, never the token.
func TestMetricsTokenFileRefusedAtStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(path, []byte("metrics-token-0123456789abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{State: (&stateBox{}).get, MetricsTokenFile: path})
	if err == nil || !strings.Contains(err.Error(), "health.metrics_token_file") || strings.Contains(err.Error(), "metrics-token-") {
		t.Fatalf("New: %v", err)
	}
}
