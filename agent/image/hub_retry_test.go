package image

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// failFirst makes the first n requests answer status (with headers), then lets the fake serve.
func failFirst(n, status int, header http.Header) func(int, http.ResponseWriter, *http.Request) bool {
	return func(i int, w http.ResponseWriter, _ *http.Request) bool {
		if i > n {
			return false
		}
		for k, v := range header {
			w.Header()[k] = v
		}
		http.Error(w, `{"message":"try later"}`, status)
		return true
	}
}

func TestHubRetries(t *testing.T) {
	t.Parallel()
	tags := hubTags("2.9.0", "2.10.0")

	t.Run("RateLimitedHonoursRetryAfter", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.intercept = failFirst(1, http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}})
		o := hubOptions(t, hub.srv.URL)
		var waits []time.Duration
		o.retry.waitMax = time.Minute
		o.retry.onWait = func(d time.Duration) { waits = append(waits, d) }
		start := time.Now()
		img, err := Resolve(testContext(t), o)
		if err != nil {
			t.Fatal(err)
		}
		if elapsed := time.Since(start); elapsed < time.Second {
			t.Fatalf("took %s: Retry-After: 1 not honoured", elapsed)
		}
		if len(waits) != 1 || waits[0] != time.Second {
			t.Fatalf("waits %v, want [1s]", waits)
		}
		if img.Tag != "2.10.0" || hub.requests.Load() != 2 {
			t.Fatalf("got %s after %d requests", img, hub.requests.Load())
		}
	})
	t.Run("RetryAfterBeyondDeadlineGivesUpAtOnce", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.intercept = failFirst(100, http.StatusTooManyRequests, http.Header{"Retry-After": {"3600"}})
		ctx, cancel := context.WithTimeout(testContext(t), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := Resolve(ctx, hubOptions(t, hub.srv.URL))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "retry after 1h0m0s") {
			t.Fatalf("err = %v, want a clear rate limit error", err)
		}
		t.Logf("error: %v", err)
		if elapsed := time.Since(start); elapsed > 5*time.Second || hub.requests.Load() != 1 {
			t.Fatalf("gave up after %s and %d requests, want at once", elapsed, hub.requests.Load())
		}
	})
	t.Run("ServerErrorThenSuccess", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.intercept = failFirst(1, http.StatusInternalServerError, nil)
		img, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if err != nil || img.Tag != "2.10.0" || hub.requests.Load() != 2 {
			t.Fatalf("got %s, %v after %d requests; want 2.10.0 after 2", img, err, hub.requests.Load())
		}
	})
	t.Run("ServerErrorsUseUpRetries", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.intercept = failFirst(100, http.StatusServiceUnavailable, nil)
		o := hubOptions(t, hub.srv.URL)
		o.retry.max = 3
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "status 503") ||
			!strings.Contains(err.Error(), "after 4 attempts") || !strings.Contains(err.Error(), hub.srv.URL) {
			t.Fatalf("err = %v, want 503 after 4 attempts naming the URL", err)
		}
		t.Logf("error: %v", err)
		if n := hub.requests.Load(); n != 4 {
			t.Fatalf("%d requests, want 4", n)
		}
	})
	t.Run("NotImplementedIsNotRetried", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.intercept = failFirst(100, http.StatusNotImplemented, nil)
		_, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if err == nil || errors.Is(err, ErrUnreachable) || hub.requests.Load() != 1 {
			t.Fatalf("err = %v after %d requests, want one request and a plain error", err, hub.requests.Load())
		}
	})
	t.Run("ForbiddenIsNotRetried", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.intercept = failFirst(100, http.StatusForbidden, nil)
		_, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "status 403") || hub.requests.Load() != 1 {
			t.Fatalf("err = %v after %d requests, want one request and status 403", err, hub.requests.Load())
		}
	})
}

// hangingHub never answers until the test ends. arrived gets a value per request (dropped when full).
func hangingHub(t *testing.T) (srv *httptest.Server, n *atomic.Int32, arrived chan struct{}) {
	n = new(atomic.Int32)
	arrived = make(chan struct{}, 1)
	done := make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv, n, arrived
}

func TestHubTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("RequestTimeout", func(t *testing.T) {
		t.Parallel()
		srv, n, _ := hangingHub(t)
		o := hubOptions(t, srv.URL)
		o.Timeout = 100 * time.Millisecond
		o.retry.max = 2
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no answer within 100ms") ||
			!strings.Contains(err.Error(), "list tags of smartcontract/chainlink") {
			t.Fatalf("err = %v, want a timeout naming the bound and the operation", err)
		}
		t.Logf("error: %v", err)
		if n.Load() != 3 {
			t.Fatalf("%d requests, want 3 (timeouts are retried)", n.Load())
		}
	})
	t.Run("ResolveDeadline", func(t *testing.T) {
		t.Parallel()
		srv, _, _ := hangingHub(t)
		ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Resolve(ctx, hubOptions(t, srv.URL))
		if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), "deadline of the image resolution reached") {
			t.Fatalf("err = %v, want the resolve deadline", err)
		}
		t.Logf("error: %v", err)
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Fatalf("returned after %s, the deadline was 300ms", elapsed)
		}
	})
	t.Run("CancelledIsNotUnreachable", func(t *testing.T) {
		t.Parallel()
		srv, _, arrived := hangingHub(t)
		ctx, cancel := context.WithCancel(testContext(t))
		go func() {
			select { // cancel once the request is in flight (or give up waiting for it)
			case <-arrived:
			case <-time.After(10 * time.Second):
			}
			cancel()
		}()
		_, err := Resolve(ctx, hubOptions(t, srv.URL))
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want context.Canceled and no fallback", err)
		}
	})
}
