package chainsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// request is one JSON-RPC call.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// response is one JSON-RPC answer: result (null included) or error, never both.
type response struct {
	JSONRPC string
	ID      json.RawMessage
	Result  any
	Error   *RPCError
}

func (r response) MarshalJSON() ([]byte, error) {
	if r.Error != nil {
		return json.Marshal(struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Error   *RPCError       `json:"error"`
		}{r.JSONRPC, r.ID, r.Error})
	}
	return json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result"`
	}{r.JSONRPC, r.ID, r.Result})
}

var errMethodNotFound = func(m string) *RPCError {
	return &RPCError{Code: -32601, Message: fmt.Sprintf("the method %s does not exist/is not available", m)}
}

// errNotificationsUnsupported answers subscriptions over HTTP, as geth does.
var errNotificationsUnsupported = &RPCError{Code: -32601, Message: "notifications not supported"}

// maxBody bounds a request body.
const maxBody = 1 << 20

func (s *Server) servePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return
	}
	out := s.handleMessage(body, nil)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// handleMessage answers one message (a call or a batch); conn is the WebSocket connection, nil over HTTP.
func (s *Server) handleMessage(body []byte, conn *wsConn) []byte {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var reqs []request
		if err := json.Unmarshal(trimmed, &reqs); err != nil {
			return mustJSON(parseError())
		}
		out := make([]response, 0, len(reqs))
		for _, req := range reqs {
			out = append(out, s.call(req, conn))
		}
		return mustJSON(out)
	}
	var req request
	if err := json.Unmarshal(trimmed, &req); err != nil {
		return mustJSON(parseError())
	}
	return mustJSON(s.call(req, conn))
}

func parseError() response {
	return response{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: &RPCError{Code: -32700, Message: "parse error"}}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own types are marshalled
	}
	return b
}

// call answers one request.
func (s *Server) call(req request, conn *wsConn) response {
	id := req.ID
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	s.mu.Lock()
	s.calls[req.Method]++
	rpcErr, head, chainID := s.rpcErr, s.head, s.chainID
	s.mu.Unlock()
	resp := response{JSONRPC: "2.0", ID: id}
	if rpcErr != nil {
		resp.Error = rpcErr
		return resp
	}
	switch req.Method {
	case "eth_blockNumber":
		resp.Result = hexUint(head)
	case "eth_chainId":
		resp.Result = hexUint(chainID)
	case "net_version":
		resp.Result = strconv.FormatUint(chainID, 10)
	case "web3_clientVersion":
		resp.Result = "chainsim/v1"
	case "eth_getBlockByNumber":
		n, err := blockParam(req.Params, head)
		if err != nil {
			resp.Error = &RPCError{Code: -32602, Message: err.Error()}
		} else if n <= head {
			resp.Result = block(n)
		} else {
			resp.Result = nil // geth answers null for a block it does not have
		}
	case "eth_subscribe", "eth_unsubscribe":
		if conn == nil {
			resp.Error = errNotificationsUnsupported
			return resp
		}
		resp.Result, resp.Error = conn.subscription(req)
	default:
		resp.Error = errMethodNotFound(req.Method)
	}
	return resp
}

// blockParam reads eth_getBlockByNumber's first parameter: "latest", "pending", "safe", "finalized" or hex.
func blockParam(params json.RawMessage, head uint64) (uint64, error) {
	var args []any
	if err := json.Unmarshal(params, &args); err != nil || len(args) == 0 {
		return 0, fmt.Errorf("missing value for required argument 0")
	}
	tag, _ := args[0].(string)
	switch tag {
	case "latest", "pending", "safe", "finalized":
		return head, nil
	case "earliest":
		return 0, nil
	}
	n, err := strconv.ParseUint(trimHex(tag), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid argument 0: hex string without 0x prefix")
	}
	return n, nil
}

func trimHex(s string) string {
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		return s[2:]
	}
	return "!" // not hex: fails the parse
}

func hexUint(n uint64) string { return "0x" + strconv.FormatUint(n, 16) }

// block is a minimal block header; the hash is derived from the number so it is stable.
func block(n uint64) map[string]any {
	return map[string]any{
		"number":     hexUint(n),
		"hash":       fmt.Sprintf("0x%064x", n+0xc0ffee),
		"parentHash": fmt.Sprintf("0x%064x", n-1+0xc0ffee),
		"timestamp":  hexUint(1_700_000_000 + 12*n),
	}
}
