package health

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// headTracker tells whether the chain head advances: the head must rise within stallAfter of the last rise.
type headTracker struct {
	stallAfter time.Duration
	mu         sync.Mutex
	head       uint64
	rose       time.Time // when head was first seen at its current (highest) value; zero before any
}

// observe records a head seen at now and reports whether the head is still advancing.
func (h *headTracker) observe(head uint64, now time.Time) (ok bool, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rose.IsZero() || head > h.head {
		h.head, h.rose = head, now
		return true, fmt.Sprintf("head %d", head)
	}
	stuck := now.Sub(h.rose)
	if stuck > h.stallAfter {
		return false, fmt.Sprintf("head stuck at %d for %s (bound %s; now answering %d)", h.head,
			stuck.Round(time.Second/10), h.stallAfter, head)
	}
	return true, fmt.Sprintf("head %d, unchanged for %s", h.head, stuck.Round(time.Second/10))
}

// parseQuantity reads a JSON-RPC quantity ("0x1b4").
func parseQuantity(s string) (uint64, error) {
	hex, ok := strings.CutPrefix(s, "0x")
	if !ok || hex == "" {
		return 0, fmt.Errorf("%q is not a hex quantity", oneLine(s, 40))
	}
	n, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a hex quantity", oneLine(s, 40))
	}
	return n, nil
}

// current is the highest head seen.
func (h *headTracker) current() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.head
}
