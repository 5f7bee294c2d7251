package chainsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wsWriteBound bounds one write to a WebSocket client.
const wsWriteBound = 5 * time.Second

// wsConn is one WebSocket client and its subscriptions.
type wsConn struct {
	s    *Server
	c    *websocket.Conn
	ctx  context.Context
	mu   sync.Mutex
	subs map[string]*subscriber
	// fresh are subscriptions whose id has not been sent yet: their heads flow only after it, as with geth.
	fresh []*subscriber
}

// subscriber is one newHeads subscription. heads is buffered so SetHead never waits on a slow client; a client
// that falls that far behind misses heads, as with a real node.
type subscriber struct {
	id    string
	heads chan uint64
}

func (sub *subscriber) notify(n uint64) {
	select {
	case sub.heads <- n:
	default:
	}
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	c.SetReadLimit(maxBody)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() { // Close ends every connection
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn := &wsConn{s: s, c: c, ctx: ctx, subs: map[string]*subscriber{}}
	defer conn.close()
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if !s.waitStall(ctx) {
			return
		}
		if conn.write(s.handleMessage(msg, conn)) != nil {
			return
		}
		conn.startFresh()
	}
}

func (conn *wsConn) write(b []byte) error {
	ctx, cancel := context.WithTimeout(conn.ctx, wsWriteBound)
	defer cancel()
	return conn.c.Write(ctx, websocket.MessageText, b)
}

// subscription answers eth_subscribe and eth_unsubscribe.
func (conn *wsConn) subscription(req request) (any, *RPCError) {
	var args []string
	_ = json.Unmarshal(req.Params, &args)
	if req.Method == "eth_unsubscribe" {
		if len(args) == 0 {
			return nil, &RPCError{Code: -32602, Message: "missing value for required argument 0"}
		}
		return conn.unsubscribe(args[0]), nil
	}
	if len(args) == 0 || args[0] != "newHeads" {
		return nil, &RPCError{Code: -32602, Message: "chainsim: only newHeads subscriptions are supported"}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	sub := &subscriber{id: "0x" + hex.EncodeToString(b[:]), heads: make(chan uint64, 64)}
	conn.mu.Lock()
	conn.subs[sub.id] = sub
	conn.fresh = append(conn.fresh, sub)
	conn.mu.Unlock()
	conn.s.mu.Lock()
	conn.s.subs[sub] = struct{}{}
	conn.s.mu.Unlock()
	return sub.id, nil
}

// startFresh starts pushing heads to the subscriptions just acknowledged.
func (conn *wsConn) startFresh() {
	conn.mu.Lock()
	fresh := conn.fresh
	conn.fresh = nil
	conn.mu.Unlock()
	for _, sub := range fresh {
		go conn.push(sub)
	}
}

// push sends sub's heads until the connection ends.
func (conn *wsConn) push(sub *subscriber) {
	for {
		select {
		case n := <-sub.heads:
			note := map[string]any{"jsonrpc": "2.0", "method": "eth_subscription",
				"params": map[string]any{"subscription": sub.id, "result": block(n)}}
			if conn.write(mustJSON(note)) != nil {
				return
			}
		case <-conn.ctx.Done():
			return
		}
	}
}

func (conn *wsConn) unsubscribe(id string) bool {
	conn.mu.Lock()
	sub, ok := conn.subs[id]
	delete(conn.subs, id)
	conn.mu.Unlock()
	if ok {
		conn.s.mu.Lock()
		delete(conn.s.subs, sub)
		conn.s.mu.Unlock()
	}
	return ok
}

func (conn *wsConn) close() {
	conn.mu.Lock()
	ids := make([]string, 0, len(conn.subs))
	for id := range conn.subs {
		ids = append(ids, id)
	}
	conn.mu.Unlock()
	for _, id := range ids {
		conn.unsubscribe(id)
	}
	_ = conn.c.Close(websocket.StatusNormalClosure, "")
}
