package health

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
)

// rpcRequest and rpcResponse are JSON-RPC 2.0 messages.
type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

type rpcResponse struct {
	ID     *uint64         `json:"id"`
	Method string          `json:"method"` // set on notifications (eth_subscription)
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var rpcIDs atomic.Uint64

func newRPCRequest(method string, params ...any) rpcRequest {
	if params == nil {
		params = []any{}
	}
	return rpcRequest{JSONRPC: "2.0", ID: rpcIDs.Add(1), Method: method, Params: params}
}

// result decodes a response's result into out, or returns its error.
func (r rpcResponse) result(method string, out any) error {
	if r.Error != nil {
		return fmt.Errorf("%s: json-rpc error %d: %s", method, r.Error.Code, oneLine(r.Error.Message, 200))
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("%s: unexpected result %s", method, oneLine(string(r.Result), 80))
	}
	return nil
}

// callHTTP makes one JSON-RPC call over HTTP POST.
func callHTTP(ctx context.Context, c *http.Client, url, method string, out any, params ...any) error {
	body, err := json.Marshal(newRPCRequest(method, params...))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	code, resp, err := do(c, req)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if code != http.StatusOK {
		return &httpStatusError{method: method, code: code, body: oneLine(string(resp), 200)}
	}
	var r rpcResponse
	if err := decode(resp, method, &r); err != nil {
		return err
	}
	return r.result(method, out)
}

// httpStatusError is a JSON-RPC POST answered with a status other than 200. Body is the start of the answer,
// which is often the only explanation (geth's 403 for a host name outside --http.vhosts: "invalid host
// specified").
type httpStatusError struct {
	method string
	code   int
	body   string
}

func (e *httpStatusError) Error() string {
	msg := fmt.Sprintf("%s: HTTP %d", e.method, e.code)
	if e.body != "" {
		msg += ": " + e.body
	}
	return msg
}
