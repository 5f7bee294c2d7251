package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// wsRPC is one WebSocket connection to the chain client, kept open across runs of the WebSocket check: it
// carries JSON-RPC calls and the newHeads notifications. One reader goroutine owns every read: it hands each
// answer to its caller and records each head. The connection ends on Close or when the server drops it.
type wsRPC struct {
	conn *websocket.Conn
	done chan struct{} // closed when the reader stops
	err  error         // why it stopped; valid once done is closed

	mu      sync.Mutex
	pending map[uint64]chan rpcResponse
	heads   int           // newHeads notifications received
	head    uint64        // the newest head's number
	headAt  time.Time     // when it arrived
	arrived chan struct{} // closed (and replaced) at each head: wakes waitHead
}

// wsMessage is anything the server sends: an answer (id set) or a notification (method eth_subscription).
type wsMessage struct {
	rpcResponse
	Params struct {
		Subscription string          `json:"subscription"`
		Result       json.RawMessage `json:"result"`
	} `json:"params"`
}

// dialWS opens the connection; ctx bounds the handshake only.
func dialWS(ctx context.Context, rawURL, key string) (*wsRPC, error) {
	conn, resp, err := websocket.Dial(ctx, rawURL, &websocket.DialOptions{HTTPClient: newHTTPClient()})
	if err != nil {
		return nil, dialError(rawURL, key, resp, err)
	}
	conn.SetReadLimit(maxBody)
	w := &wsRPC{conn: conn, done: make(chan struct{}), pending: map[uint64]chan rpcResponse{}, arrived: make(chan struct{})}
	go w.read()
	return w, nil
}

// dialError says what a failed handshake means: an HTTP endpoint that answered 200 is not a WebSocket one
// (key, the configuration's ws_url, pointing at the HTTP port); any other status comes with the start of its body.
func dialError(rawURL, key string, resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return &chainError{msg: "connect to " + redactURL(rawURL) + ": " + scrubURL(err, rawURL), cause: err}
	}
	body := ""
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		body = oneLine(string(b), 200)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return &chainError{kind: ErrWrongEndpoint, msg: fmt.Sprintf("connect to %s: answered HTTP %d instead of "+
			"switching to WebSocket (101): an HTTP endpoint, not a WebSocket one (is %s the HTTP port?)",
			redactURL(rawURL), resp.StatusCode, key), cause: err}
	}
	msg := fmt.Sprintf("connect to %s: HTTP %d instead of switching to WebSocket (101)", redactURL(rawURL), resp.StatusCode)
	if body != "" {
		msg += ": " + body
	}
	return errors.New(scrubURL(errors.New(msg), rawURL))
}

func (w *wsRPC) read() {
	defer close(w.done)
	for {
		var m wsMessage
		if err := wsjson.Read(context.Background(), w.conn, &m); err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		switch {
		case m.ID != nil:
			w.mu.Lock()
			ch := w.pending[*m.ID]
			delete(w.pending, *m.ID)
			w.mu.Unlock()
			if ch != nil {
				ch <- m.rpcResponse // buffered: never blocks the reader
			}
		case m.Method == "eth_subscription":
			// Only newHeads is subscribed on this connection: every notification is a head.
			var h struct {
				Number string `json:"number"`
			}
			_ = json.Unmarshal(m.Params.Result, &h)
			n, _ := parseQuantity(h.Number)
			w.mu.Lock()
			w.heads++
			w.head, w.headAt = n, time.Now()
			close(w.arrived)
			w.arrived = make(chan struct{})
			w.mu.Unlock()
		}
	}
}

// call makes one JSON-RPC call and waits for its answer, ctx's end or the connection's.
func (w *wsRPC) call(ctx context.Context, method string, out any, params ...any) error {
	req := newRPCRequest(method, params...)
	ch := make(chan rpcResponse, 1)
	w.mu.Lock()
	w.pending[req.ID] = ch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pending, req.ID)
		w.mu.Unlock()
	}()
	if err := wsjson.Write(ctx, w.conn, req); err != nil {
		return fmt.Errorf("%s: send: %w", method, err)
	}
	select {
	case r := <-ch:
		return r.result(method, out)
	case <-w.done:
		return fmt.Errorf("%s: the connection ended: %w", method, w.endErr())
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// subscribeHeads asks for newHeads notifications.
func (w *wsRPC) subscribeHeads(ctx context.Context) error {
	var id string
	if err := w.call(ctx, "eth_subscribe", &id, "newHeads"); err != nil {
		return err
	}
	if id == "" {
		return errors.New("eth_subscribe newHeads granted no subscription id")
	}
	return nil
}

// lastHead is the count of heads received, the newest head's number and when it arrived.
func (w *wsRPC) lastHead() (count int, head uint64, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.heads, w.head, w.headAt
}

// waitHead waits until more than seen heads have arrived, until, ctx ends or the connection ends; it reports
// whether a head came.
func (w *wsRPC) waitHead(ctx context.Context, seen int, until time.Time) bool {
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		w.mu.Lock()
		n, arrived := w.heads, w.arrived
		w.mu.Unlock()
		if n > seen {
			return true
		}
		select {
		case <-arrived:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		case <-w.done:
			return false
		}
	}
}

// ended reports whether the connection is gone, and why.
func (w *wsRPC) ended() (bool, error) {
	select {
	case <-w.done:
		return true, w.endErr()
	default:
		return false, nil
	}
}

func (w *wsRPC) endErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the connection (and with it the subscription) and waits for the reader.
func (w *wsRPC) Close() error {
	err := w.conn.CloseNow()
	<-w.done
	return err
}
