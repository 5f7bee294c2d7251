package health

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cl-agent/cl-agent/agent/state"
)

// newErroredRuns counts the errored job runs among the newest size runs of GET /v2/pipeline/runs; any fails the
// check. The count is cl_agent_errored_runs (CloudWatch newErroredRuns).
func newErroredRuns(api *NodeAPI, size int, interval, timeout time.Duration) Check {
	if size <= 0 {
		size = 100
	}
	return &erroredRuns{spec: spec{string(state.NodeErroredRuns), interval, timeout}, api: api, size: size}
}

type erroredRuns struct {
	spec
	api  *NodeAPI
	size int
}

// runsDocument is the node's answer of GET /v2/pipeline/runs.
type runsDocument struct {
	Data []struct {
		ID         string `json:"id"`
		Attributes struct {
			State string `json:"state"` // running | suspended | errored | completed
		} `json:"attributes"`
	} `json:"data"`
}

func (c *erroredRuns) Run(ctx context.Context) Result {
	var doc runsDocument
	if err := c.api.getJSON(ctx, fmt.Sprintf("/v2/pipeline/runs?size=%d", c.size), &doc); err != nil {
		return fail(c.name, err.Error())
	}
	var errored []string
	for _, r := range doc.Data {
		if r.Attributes.State == "errored" {
			errored = append(errored, r.ID)
		}
	}
	samples := []Sample{{Metric: metricErroredRuns, Value: float64(len(errored))}}
	if len(errored) > 0 {
		return fail(c.name, fmt.Sprintf("%d of the newest %d runs errored (ids %s)", len(errored), len(doc.Data),
			oneLine(strings.Join(errored, ", "), 120)), samples...)
	}
	return pass(c.name, fmt.Sprintf("no errored run among the newest %d", len(doc.Data)), samples...)
}

// target is where the check looks, for its timeout message.
func (c *erroredRuns) target() string { return c.api.base + "/v2/pipeline/runs" }
