package chainsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

func post(t *testing.T, ctx context.Context, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitHeld polls until the stall holds a request, for at most 5s.
func waitHeld(t *testing.T, s *Server) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "a request held by the stall", func() bool { return s.Held() > 0 })
}

func TestHTTPMethods(t *testing.T) {
	t.Parallel()
	ctx := bounded(t)
	s := StartT(t, Options{ChainID: 11155111, Head: 0x10})
	for _, tc := range []struct{ body, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`, `"result":"0x10"`},
		{`{"jsonrpc":"2.0","id":2,"method":"eth_chainId","params":[]}`, `"result":"0xaa36a7"`},
		{`{"jsonrpc":"2.0","id":3,"method":"net_version"}`, `"result":"11155111"`},
		{`{"jsonrpc":"2.0","id":4,"method":"eth_getBlockByNumber","params":["latest",false]}`, `"number":"0x10"`},
		{`{"jsonrpc":"2.0","id":5,"method":"eth_getBlockByNumber","params":["0x11",false]}`, `"result":null`},
		{`{"jsonrpc":"2.0","id":6,"method":"eth_subscribe","params":["newHeads"]}`, `"notifications not supported"`},
		{`{"jsonrpc":"2.0","id":7,"method":"eth_mine"}`, `"code":-32601`},
		{`[{"jsonrpc":"2.0","id":8,"method":"eth_blockNumber"},{"jsonrpc":"2.0","id":9,"method":"eth_chainId"}]`, `"id":9,"result":"0xaa36a7"`},
		{`{not json`, `"code":-32700`},
	} {
		if code, body := post(t, ctx, s.URL, tc.body); code != 200 || !strings.Contains(body, tc.want) {
			t.Errorf("%s → %d %s; want %s", tc.body, code, body, tc.want)
		}
	}
	if got := s.Calls("eth_blockNumber"); got != 2 {
		t.Errorf("Calls(eth_blockNumber) = %d; want 2", got)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	ctx := bounded(t)
	s := StartT(t, Options{})
	s.FailWith(-32005, "limit exceeded")
	if _, body := post(t, ctx, s.URL, `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`); !strings.Contains(body, `"code":-32005`) {
		t.Errorf("FailWith: %s", body)
	}
	s.Heal()
	s.FailHTTP(http.StatusTooManyRequests)
	if code, _ := post(t, ctx, s.URL, `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`); code != http.StatusTooManyRequests {
		t.Errorf("FailHTTP: %d", code)
	}
	s.Heal()
	if _, body := post(t, ctx, s.URL, `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`); !strings.Contains(body, `"result":"0x1"`) {
		t.Errorf("after Heal: %s", body)
	}
}

func TestStallHoldsUntilResume(t *testing.T) {
	t.Parallel()
	ctx := bounded(t)
	s := StartT(t, Options{})
	s.Stall()
	answered := make(chan string, 1)
	go func() { // no t.Fatal off the test goroutine: failures show as an empty body
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- ""
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- string(b)
	}()
	waitHeld(t, s)
	select {
	case body := <-answered:
		t.Fatalf("answered while stalled: %s", body)
	default:
	}
	s.Resume()
	select {
	case body := <-answered:
		if !strings.Contains(body, `"result":"0x1"`) {
			t.Errorf("after Resume: %s", body)
		}
	case <-ctx.Done():
		t.Fatal("no answer after Resume")
	}
}

func TestStallReleasedByClose(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Stall()
	errs := make(chan error, 1)
	go func() {
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Post(s.URL, "application/json", bytes.NewReader([]byte(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`)))
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}()
	waitHeld(t, s)
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %s with a stalled request", took)
	}
	<-errs
}

func TestWebSocketNewHeads(t *testing.T) {
	t.Parallel()
	ctx := bounded(t)
	s := StartT(t, Options{Head: 5})
	c, _, err := websocket.Dial(ctx, s.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	call := func(id int, method string, params ...any) map[string]any {
		t.Helper()
		if err := wsjson.Write(ctx, c, map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}); err != nil {
			t.Fatal(err)
		}
		var resp map[string]any
		if err := wsjson.Read(ctx, c, &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := call(1, "eth_blockNumber"); resp["result"] != "0x5" {
		t.Errorf("eth_blockNumber over WS: %v", resp)
	}
	resp := call(2, "eth_subscribe", "newHeads")
	sub, _ := resp["result"].(string)
	if !strings.HasPrefix(sub, "0x") {
		t.Fatalf("eth_subscribe: %v", resp)
	}
	if s.Subscribers() != 1 {
		t.Errorf("Subscribers = %d; want 1", s.Subscribers())
	}
	s.Advance(2)
	for _, want := range []string{"0x6", "0x7"} {
		var note struct {
			Method string `json:"method"`
			Params struct {
				Subscription string          `json:"subscription"`
				Result       json.RawMessage `json:"result"`
			} `json:"params"`
		}
		if err := wsjson.Read(ctx, c, &note); err != nil {
			t.Fatal(err)
		}
		if note.Method != "eth_subscription" || note.Params.Subscription != sub || !strings.Contains(string(note.Params.Result), `"number":"`+want+`"`) {
			t.Errorf("notification %+v %s; want head %s on %s", note, note.Params.Result, want, sub)
		}
	}
	if resp := call(3, "eth_unsubscribe", sub); resp["result"] != true {
		t.Errorf("eth_unsubscribe: %v", resp)
	}
	if s.Subscribers() != 0 {
		t.Errorf("Subscribers after unsubscribe = %d", s.Subscribers())
	}
}
