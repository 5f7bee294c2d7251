package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		status int
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"Seconds", 429, http.Header{"Retry-After": {"7"}}, 7 * time.Second, true},
		{"HTTPDate", 429, http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second, true},
		{"HTTPDateInThePast", 503, http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0, true},
		{"OldXRetryAfterUnixTime", 429, http.Header{"X-Retry-After": {fmt.Sprint(now.Add(42 * time.Second).Unix())}}, 42 * time.Second, true},
		{"ServiceUnavailable", 503, http.Header{"Retry-After": {"3"}}, 3 * time.Second, true},
		{"Garbage", 429, http.Header{"Retry-After": {"soon"}}, 0, false},
		{"Negative", 429, http.Header{"Retry-After": {"-5"}}, 0, false},
		{"NotForOtherStatuses", 500, http.Header{"Retry-After": {"7"}}, 0, false},
		{"Absent", 429, http.Header{}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := retryAfter(&http.Response{StatusCode: tc.status, Header: tc.header}, now)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("retryAfter = %s, %v; want %s, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	c := newHTTPClient(time.Second, retryPolicy{now: func() time.Time { return now }}, zap.NewNop())
	t.Run("ExponentialWithJitterCapped", func(t *testing.T) {
		for attempt, base := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
			base *= time.Millisecond
			for range 50 {
				got := c.backoff(100*time.Millisecond, time.Second, attempt, nil)
				if got < base/2 || got > base {
					t.Fatalf("attempt %d: wait %s, want within [%s, %s]", attempt, got, base/2, base)
				}
			}
		}
		if got := c.backoff(time.Second, time.Minute, 62, nil); got > time.Minute || got < 30*time.Second {
			t.Fatalf("a huge attempt number waits %s, want the cap", got)
		}
	})
	t.Run("RetryAfterCapped", func(t *testing.T) {
		resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"3600"}}}
		if got := c.backoff(time.Millisecond, 30*time.Second, 0, resp); got != 30*time.Second {
			t.Fatalf("wait %s, want the 30s cap", got)
		}
		resp.Header.Set("Retry-After", "2")
		if got := c.backoff(time.Millisecond, 30*time.Second, 3, resp); got != 2*time.Second {
			t.Fatalf("wait %s, want Retry-After's 2s", got)
		}
	})
}

func TestCheckRetry(t *testing.T) {
	t.Parallel()
	c := newHTTPClient(time.Second, retryPolicy{}, zap.NewNop())
	ctx := context.Background()
	for _, tc := range []struct {
		status int
		retry  bool
	}{{200, false}, {301, false}, {400, false}, {401, false}, {403, false}, {404, false}, {429, true},
		{500, true}, {501, false}, {502, true}, {503, true}, {504, true}} {
		retry, err := c.checkRetry(ctx, &http.Response{StatusCode: tc.status, Header: http.Header{}}, nil)
		if retry != tc.retry || err != nil {
			t.Errorf("status %d: retry=%v err=%v, want retry=%v", tc.status, retry, err, tc.retry)
		}
	}
	if retry, _ := c.checkRetry(ctx, nil, errors.New("connection refused")); !retry {
		t.Errorf("a connection error is not retried")
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if retry, err := c.checkRetry(done, &http.Response{StatusCode: 503}, nil); retry || !errors.Is(err, context.Canceled) {
		t.Errorf("retry=%v err=%v once ctx is done, want no retry", retry, err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	retry, err := c.checkRetry(short, &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"60"}}}, nil)
	if retry || err == nil || !strings.Contains(err.Error(), "retry after 1m0s") {
		t.Errorf("retry=%v err=%v, want to give up: Retry-After beyond the deadline", retry, err)
	}
}

func TestHTTPErrorUnreachable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  *HTTPError
		want bool
	}{
		{&HTTPError{Err: errors.New("connection refused")}, true},
		{&HTTPError{Status: 429}, true},
		{&HTTPError{Status: 500}, true},
		{&HTTPError{Status: 503}, true},
		{&HTTPError{Status: 501}, false},
		{&HTTPError{Status: 404}, false},
		{&HTTPError{Status: 401}, false},
		{&HTTPError{Err: context.Canceled}, false},
		{&HTTPError{Err: fmt.Errorf("wrapped: %w", context.DeadlineExceeded)}, true},
	} {
		if got := errors.Is(fmt.Errorf("resolve: %w", tc.err), ErrUnreachable); got != tc.want {
			t.Errorf("%v: unreachable=%v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	if got := redactURL("https://user:hunter2@hub.example/v2/x?page=2"); strings.Contains(got, "hunter2") || strings.Contains(got, "user") {
		t.Fatalf("redactURL kept the credentials: %s", got)
	}
}

// TestRedirectsStayOnTheHost: a redirect on the same host is followed; one to another host (the metadata
// service, say) is refused with an error naming both, and the other host is never asked.
func TestRedirectsStayOnTheHost(t *testing.T) {
	t.Parallel()
	var asked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked.Store(true) }))
	t.Cleanup(elsewhere.Close)
	mux := http.NewServeMux()
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/here", http.StatusFound) })
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/latest/meta-data/iam/security-credentials/", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := newHTTPClient(5*time.Second, retryPolicy{max: 0}, zap.NewNop())

	resp, err := c.do(context.Background(), "test", http.MethodGet, srv.URL+"/moved", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("same-host redirect: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.do(context.Background(), "test", http.MethodGet, srv.URL+"/away", nil)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a redirect to another host was followed")
	}
	if !strings.Contains(err.Error(), "refusing a redirect") || asked.Load() {
		t.Fatalf("error %v, other host asked %v; want a refusal naming the redirect and no request there", err, asked.Load())
	}
}
