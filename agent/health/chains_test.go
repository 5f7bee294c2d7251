package health

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"

	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/chainsim"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Tests of the chain checks of several chains and clients (node.chains) against simulated chain clients.

// expect is what a check's result must show: passing or failing, with each of details in its detail.
type expect struct {
	ok      bool
	details []string
}

func TestChainClientsEachGetTheirOwnChecksAndSeries(t *testing.T) {
	t.Parallel()
	polygon := chainsim.StartT(t, chainsim.Options{ChainID: 137, Head: 100})
	polygonSend := chainsim.StartT(t, chainsim.Options{ChainID: 137, Head: 7})
	optimism := chainsim.StartT(t, chainsim.Options{ChainID: 10, Head: 50})
	const key = "Provider-Key-0123456789abcdef"
	wrongSource := `the configuration expects 10 (node.chains, client "optimism-wrong")`

	cases := []struct {
		name    string
		clients []ChainClient
		checks  map[string]expect // every check there must be, host aside
		heads   map[string]float64
		latency []string // cl_agent_rpc_latency_seconds series
		cwHead  []string // ChainHead datums' dimensions beside InstanceId
		cwRTT   []string // RPCLatency datums' dimensions beside InstanceId
	}{
		{
			name: "SeveralChainsOneCheckPerClientAndTransport",
			clients: []ChainClient{
				{ChainID: 137, Name: "polygon-a", HTTPURL: polygon.URL, WSURL: polygon.WSURL},
				{ChainID: 137, Name: "polygon-send", HTTPURL: polygonSend.URL, WSURL: polygonSend.WSURL, SendOnly: true},
				{ChainID: 10, Name: "optimism-a", HTTPURL: optimism.URL, WSURL: optimism.WSURL},
				// A client of chain 10 pointed at a chain 137 endpoint, with a key in its path.
				{ChainID: 10, Name: "optimism-wrong", HTTPURL: polygon.URL + "/v3/" + key, WSURL: polygon.WSURL + "/v3/" + key},
			},
			checks: map[string]expect{
				"chain_http/137/polygon-a":    {ok: true, details: []string{"head 100"}},
				"chain_ws/137/polygon-a":      {ok: true, details: []string{"newHeads subscribed"}},
				"chain_http/137/polygon-send": {ok: true, details: []string{"head 7"}},
				"chain_http/10/optimism-a":    {ok: true, details: []string{"head 50"}},
				"chain_ws/10/optimism-a":      {ok: true, details: []string{"newHeads subscribed"}},
				"chain_http/10/optimism-wrong": {details: []string{
					"wrong chain: " + polygon.URL + "/… answers eth_chainId 137; " + wrongSource}},
				"chain_ws/10/optimism-wrong": {details: []string{
					"wrong chain: " + polygon.WSURL + "/… answers eth_chainId 137; " + wrongSource}},
			},
			// The send-only client's head is not followed; the wrong one fails before its head is read.
			heads: map[string]float64{"chain_id=137,node=polygon-a": 100, "chain_id=10,node=optimism-a": 50},
			latency: []string{"chain_id=10,node=optimism-a,transport=http", "chain_id=10,node=optimism-a,transport=ws",
				"chain_id=137,node=polygon-a,transport=http", "chain_id=137,node=polygon-a,transport=ws",
				"chain_id=137,node=polygon-send,transport=http"},
			cwHead: []string{"ChainId=10,Node=optimism-a", "ChainId=137,Node=polygon-a"},
			cwRTT: []string{"ChainId=10,Node=optimism-a,Transport=http", "ChainId=10,Node=optimism-a,Transport=ws",
				"ChainId=137,Node=polygon-a,Transport=http", "ChainId=137,Node=polygon-a,Transport=ws",
				"ChainId=137,Node=polygon-send,Transport=http"},
		},
		{
			name:    "ShorthandKeepsTodaysCheckIDsAndDimensions",
			clients: shorthand(137, polygon.URL, polygon.WSURL),
			checks: map[string]expect{
				string(state.ChainHTTP): {ok: true, details: []string{"head 100"}},
				string(state.ChainWS):   {ok: true},
			},
			heads:   map[string]float64{"chain_id=137,node=primary": 100},
			latency: []string{"chain_id=137,node=primary,transport=http", "chain_id=137,node=primary,transport=ws"},
			cwHead:  []string{""},
			cwRTT:   []string{"Transport=http", "Transport=ws"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cw := &dimsCW{dims: map[string]map[string]bool{}}
			box := &stateBox{st: AgentState{Role: state.Standby, LastBeat: time.Now()}}
			svc, _ := startService(t, Options{State: box.get, Chains: tc.clients, HeadStallAfter: time.Minute,
				CheckInterval: 100 * time.Millisecond, CheckTimeout: 2 * time.Second,
				CloudWatch: cw, InstanceID: "i-chains", CloudWatchInterval: 50 * time.Millisecond})

			want := append(slices.Sorted(maps.Keys(tc.checks)), string(state.Host))
			sort.Strings(want)
			testenv.Poll(15*time.Second, 10*time.Millisecond, func() bool { return len(svc.Results()) >= len(want) })
			var names []string
			for _, res := range svc.Results() {
				names = append(names, res.Name)
			}
			if !slices.Equal(names, want) {
				t.Fatalf("checks %q; want %q", names, want)
			}
			for name, e := range tc.checks {
				res := waitResult(t, svc.runner, name, time.Time{}, 10*time.Second, func(r Result) bool { return r.OK == e.ok })
				for _, d := range e.details {
					if !strings.Contains(res.Detail, d) {
						t.Errorf("%s: ok=%v %q; want ok=%v with %q", name, res.OK, res.Detail, e.ok, d)
					}
				}
				if strings.Contains(res.Detail, key) {
					t.Errorf("%s: the URL's key leaked: %q", name, res.Detail)
				}
			}

			var heads map[string]float64
			var latency, cwHead, cwRTT []string
			testenv.Poll(10*time.Second, 10*time.Millisecond, func() bool {
				heads = seriesValues(t, svc.metrics, metricChainHead)
				latency = slices.Sorted(maps.Keys(seriesValues(t, svc.metrics, metricRPCLatency)))
				cwHead, cwRTT = cw.seen("ChainHead"), cw.seen("RPCLatency")
				return maps.Equal(heads, tc.heads) && slices.Equal(latency, tc.latency) &&
					slices.Equal(cwHead, tc.cwHead) && slices.Equal(cwRTT, tc.cwRTT)
			})
			if !maps.Equal(heads, tc.heads) {
				t.Errorf("%s series %v; want %v", metricChainHead, heads, tc.heads)
			}
			if !slices.Equal(latency, tc.latency) {
				t.Errorf("%s series %q; want %q", metricRPCLatency, latency, tc.latency)
			}
			if !slices.Equal(cwHead, tc.cwHead) || !slices.Equal(cwRTT, tc.cwRTT) {
				t.Errorf("CloudWatch dimensions: ChainHead %q, RPCLatency %q; want %q, %q", cwHead, cwRTT, tc.cwHead, tc.cwRTT)
			}
			checkOK := seriesValues(t, svc.metrics, metricCheckOK)
			for name, e := range tc.checks {
				if v, ok := checkOK["check="+name]; !ok || v != boolFloat(e.ok) {
					t.Errorf("%s{check=%q} = %v (present %v); want %v", metricCheckOK, name, v, ok, boolFloat(e.ok))
				}
			}
		})
	}
}

func TestChainSendOnlyClientIsNotHeldToHeadAdvance(t *testing.T) {
	t.Parallel()
	sim := chainsim.StartT(t, chainsim.Options{ChainID: 137, Head: 7}) // a head that never moves
	box := &stateBox{st: AgentState{Role: state.Standby, LastBeat: time.Now()}}
	svc, _ := startService(t, Options{State: box.get, HeadStallAfter: 300 * time.Millisecond,
		CheckInterval: 50 * time.Millisecond, CheckTimeout: time.Second, Chains: []ChainClient{
			{ChainID: 137, Name: "primary-a", HTTPURL: sim.URL + "/a"},
			{ChainID: 137, Name: "send-b", HTTPURL: sim.URL + "/b", WSURL: sim.WSURL + "/b", SendOnly: true},
		}})
	stuck := waitResult(t, svc.runner, "chain_http/137/primary-a", time.Time{}, 10*time.Second, func(r Result) bool { return !r.OK })
	if !strings.Contains(stuck.Detail, "stuck at 7") {
		t.Errorf("the primary client on a stuck head: %q; want stuck at 7", stuck.Detail)
	}
	res := waitResult(t, svc.runner, "chain_http/137/send-b", stuck.At, 10*time.Second, func(Result) bool { return true })
	if !res.OK || !strings.Contains(res.Detail, "head 7") {
		t.Errorf("the send-only client on the same stuck head: ok=%v %q; want passing", res.OK, res.Detail)
	}
	if _, ok := sampleValue(res, metricChainHead, ""); ok {
		t.Errorf("the send-only client publishes a chain head: %v", res.Samples)
	}
	if _, ok := svc.runner.result("chain_ws/137/send-b"); ok {
		t.Error("a send-only client got a WebSocket check")
	}
}

func TestChainClientCheckName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		client ChainClient
		base   string
		want   string
	}{
		{"ShorthandKeepsTheBareID", ChainClient{ChainID: 1, Name: "primary", Shorthand: true}, string(state.ChainHTTP), "chain_http"},
		{"NodeChainsCarryChainIDAndClient", ChainClient{ChainID: 137, Name: "polygon-a"}, string(state.ChainWS), "chain_ws/137/polygon-a"},
		{"CheckCommandNamesItsLinesAlike", ChainClient{ChainID: 137, Name: "polygon-a"}, "chain-http", "chain-http/137/polygon-a"},
		{"OddNameBecomesOneASCIIWord", ChainClient{ChainID: 10, Name: "op a/ü"}, "chain_http", "chain_http/10/op%20a%2F%C3%BC"},
		{"EscapedLookingNameStaysApart", ChainClient{ChainID: 10, Name: "op%20a"}, "chain_http", "chain_http/10/op%2520a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.client.CheckName(tc.base); got != tc.want {
				t.Errorf("CheckName(%q) = %q; want %q", tc.base, got, tc.want)
			}
		})
	}
}

func TestNewRefusesTwoChecksWithOneName(t *testing.T) {
	t.Parallel()
	c := ChainClient{ChainID: 1, Name: "a", HTTPURL: "http://127.0.0.1:1"}
	_, err := New(Options{State: (&stateBox{}).get, Chains: []ChainClient{c, c}})
	if err == nil || !strings.Contains(err.Error(), `"chain_http/1/a"`) {
		t.Errorf("New with one client twice: %v; want an error naming chain_http/1/a", err)
	}
}

// seriesValues is every series of a family, by its labels ("chain_id=137,node=polygon-a").
func seriesValues(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, mf := range gather(t, m) {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(labels, ",")] = metricValue(mt)
		}
	}
	return out
}

// dimsCW takes every call and keeps, per metric name, the dimensions beside InstanceId of its datums.
type dimsCW struct {
	mu   sync.Mutex
	dims map[string]map[string]bool
}

func (c *dimsCW) PutMetricData(_ context.Context, in *cloudwatch.PutMetricDataInput, _ ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range in.MetricData {
		var dims []string
		for _, dim := range d.Dimensions {
			if name := aws.ToString(dim.Name); name != dimensionInstance {
				dims = append(dims, fmt.Sprintf("%s=%s", name, aws.ToString(dim.Value)))
			}
		}
		sort.Strings(dims)
		name := aws.ToString(d.MetricName)
		if c.dims[name] == nil {
			c.dims[name] = map[string]bool{}
		}
		c.dims[name][strings.Join(dims, ",")] = true
	}
	return &cloudwatch.PutMetricDataOutput{}, nil
}

// seen is the dimension sets of the metric's datums so far, sorted.
func (c *dimsCW) seen(metric string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.dims[metric]))
}

// TestHintsNameTheClientsKey: a URL of the other transport is blamed on the key that holds it — the shorthand's
// node.http_url / node.ws_url, or the http_url / ws_url of the node.chains client.
func TestHintsNameTheClientsKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		client   ChainClient
		httpSays string
		wsSays   string
	}{
		{ChainClient{ChainID: 1, Name: "primary", Shorthand: true, HTTPURL: "ws://127.0.0.1:1", WSURL: "http://127.0.0.1:1"},
			"node.http_url", "node.ws_url"},
		{ChainClient{ChainID: 137, Name: "polygon-a", HTTPURL: "ws://127.0.0.1:1", WSURL: "http://127.0.0.1:1"},
			`http_url of node.chains, client "polygon-a"`, `ws_url of node.chains, client "polygon-a"`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, herr := ProbeChainHTTP(ctx, tc.client, time.Second)
		_, werr := ProbeChainWS(ctx, tc.client, time.Second, time.Second)
		cancel()
		if herr == nil || !strings.Contains(herr.Error(), tc.httpSays) {
			t.Errorf("%s over HTTP: %v; want it to name %s", tc.client.Name, herr, tc.httpSays)
		}
		if werr == nil || !strings.Contains(werr.Error(), tc.wsSays) {
			t.Errorf("%s over WebSocket: %v; want it to name %s", tc.client.Name, werr, tc.wsSays)
		}
	}
}
