package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestNodeHealthCheckParsesTheReal207: the agent's own node checks (agent/health's service, as the daemon runs it
// on the active host) against the real node without a chain client. The node is ready (/readyz 200) but its
// /health answers 207 with the chain's head listener failing: node_readyz passes, node_health fails, and its
// detail names every check the node's body reports failing, with the node's own output, not just "HTTP 207".
func TestNodeHealthCheckParsesTheReal207(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	s := realnode.Render(t, pg)
	node := realnode.Start(t, image, s.Files, s.Cmd)
	node.WaitReady(readyBound)

	// What the node itself reports failing, read from its answer.
	code, body, err := node.GetBody("/health")
	if err != nil || code != http.StatusMultiStatus {
		t.Fatalf("GET /health = %d, %v; want 207 without a chain client:\n%s", code, err, body)
	}
	var doc struct {
		Data []struct {
			Attributes struct{ Name, Status, Output string } `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/health is not the node's JSON:API body: %v\n%s", err, body)
	}
	var failing []string
	for _, d := range doc.Data {
		if d.Attributes.Status == "failing" {
			failing = append(failing, d.Attributes.Name)
		}
	}
	listener := fmt.Sprintf("EVM.%d.HeadTracker.HeadListener", s.Config.Node.EVMChains()[0].ChainID)
	t.Logf("the node's /health: 207, %d of %d checks failing: %v", len(failing), len(doc.Data), failing)

	active := health.AgentState{Role: state.Active, LockEnabled: true, LockHeld: true, NodeUp: true, NodeReady: true,
		LastBeat: time.Now()} // the node checks run on the active host only
	svc, err := health.New(health.Options{
		Listen: "127.0.0.1:0", NodeURL: node.URL, CheckInterval: time.Second, CheckTimeout: 10 * time.Second,
		State: func() health.AgentState { return active },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("health service: %v", err)
		}
	})

	results := map[string]health.Result{}
	testenv.WaitFor(t, time.Minute, "the agent's node checks to run", func() bool {
		for _, r := range svc.Results() {
			results[r.Name] = r
		}
		_, r := results[string(state.NodeReadyz)]
		_, h := results[string(state.NodeHealth)]
		return r && h
	})
	if r := results[string(state.NodeReadyz)]; !r.OK {
		t.Errorf("node_readyz on the ready node: %q; want a pass", r.Detail)
	}
	res := results[string(state.NodeHealth)]
	t.Logf("node_health: ok=%t %q", res.OK, res.Detail)
	if res.OK {
		t.Fatalf("node_health passes on the node's 207: %q", res.Detail)
	}
	if !strings.Contains(res.Detail, "207") || !strings.Contains(res.Detail, listener+" (Listener is not connected)") {
		t.Errorf("node_health detail %q; want the 207 and %s with the node's output", res.Detail, listener)
	}
	for _, name := range failing {
		if !strings.Contains(res.Detail, name) {
			t.Errorf("node_health detail does not name %s, which the node reports failing: %q", name, res.Detail)
		}
	}
}
