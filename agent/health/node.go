package health

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cl-agent/cl-agent/agent/state"
)

// newNodeReadyz checks the node's /readyz at baseURL (http://127.0.0.1:<host_port>): only 200 passes.
func newNodeReadyz(baseURL string, interval, timeout time.Duration) Check {
	return &nodeReadyz{spec: spec{string(state.NodeReadyz), interval, timeout}, url: strings.TrimRight(baseURL, "/") + "/readyz", client: newHTTPClient()}
}

type nodeReadyz struct {
	spec
	url    string
	client *http.Client
}

func (c *nodeReadyz) Run(ctx context.Context) Result {
	code, _, err := get(ctx, c.client, c.url)
	switch {
	case err != nil:
		return fail(c.name, fmt.Sprintf("GET /readyz: %v", err))
	case code != http.StatusOK:
		return fail(c.name, fmt.Sprintf("GET /readyz answered %d: not ready", code))
	}
	return pass(c.name, "ready (200)")
}

// newNodeHealth checks the node's /health: 200 passes; 207 (Multi-Status) means some of the node's checks fail and
// the result names them; anything else fails.
func newNodeHealth(baseURL string, interval, timeout time.Duration) Check {
	return &nodeHealth{spec: spec{string(state.NodeHealth), interval, timeout}, url: strings.TrimRight(baseURL, "/") + "/health", client: newHTTPClient()}
}

type nodeHealth struct {
	spec
	url    string
	client *http.Client
}

// healthDocument is the node's JSON:API answer of /health.
type healthDocument struct {
	Data []struct {
		ID         string `json:"id"`
		Attributes struct {
			Name   string `json:"name"`
			Status string `json:"status"` // passing | failing
			Output string `json:"output"`
		} `json:"attributes"`
	} `json:"data"`
}

func (c *nodeHealth) Run(ctx context.Context) Result {
	code, body, err := get(ctx, c.client, c.url)
	if err != nil {
		return fail(c.name, fmt.Sprintf("GET /health: %v", err))
	}
	if code != http.StatusOK && code != http.StatusMultiStatus {
		return fail(c.name, fmt.Sprintf("GET /health answered %d", code))
	}
	var doc healthDocument
	if err := decode(body, "/health", &doc); err != nil {
		return fail(c.name, err.Error())
	}
	var failing []string
	for _, d := range doc.Data {
		if d.Attributes.Status == "passing" {
			continue
		}
		name := d.Attributes.Name
		if name == "" {
			name = d.ID
		}
		if out := oneLine(d.Attributes.Output, 120); out != "" {
			name += " (" + out + ")"
		}
		failing = append(failing, name)
	}
	switch {
	case len(failing) > 0:
		return fail(c.name, fmt.Sprintf("GET /health answered %d; failing: %s", code, strings.Join(failing, ", ")))
	case code != http.StatusOK: // 207 without a failing entry: still not healthy (only 200 is)
		return fail(c.name, fmt.Sprintf("GET /health answered %d", code))
	}
	return pass(c.name, fmt.Sprintf("healthy (200, %d checks passing)", len(doc.Data)))
}

// target is the URL the check asks (the node's, on loopback: no credentials in it), for its timeout message.
func (c *nodeReadyz) target() string { return c.url }

// target is the URL the check asks, for its timeout message.
func (c *nodeHealth) target() string { return c.url }
