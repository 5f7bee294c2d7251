package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// fakeDigest is the digest the fake sources give to a tag: distinct per tag, so a wrong pick shows.
func fakeDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// hubTags builds tag records in push order, newest push first (how the Hub lists them), each with a
// linux/amd64 image.
func hubTags(names ...string) []hubTag {
	out := make([]hubTag, len(names))
	for i, n := range names {
		out[i] = hubTag{Name: n, Digest: fakeDigest(n), Images: []hubImage{{Architecture: "amd64", OS: "linux", Digest: fakeDigest(n + "/amd64")}}}
	}
	return out
}

// armOnly gives a record only a linux/arm64 image.
func armOnly(t hubTag) hubTag {
	t.Images = []hubImage{{Architecture: "arm64", OS: "linux", Digest: fakeDigest(t.Name + "/arm64")}}
	return t
}

// fakeHub plays the Docker Hub API for one repository: the paginated tag list and single tag records.
// intercept, when set, may answer a request itself (failures, rate limits) and returns true when it did.
type fakeHub struct {
	t         *testing.T
	srv       *httptest.Server
	ns, name  string
	tags      []hubTag
	pageSize  int
	next      func(page int, def string) string // rewrites the "next" link of a page
	intercept func(n int, w http.ResponseWriter, r *http.Request) bool

	requests atomic.Int32
	mu       sync.Mutex
	paths    []string
}

func newFakeHub(t *testing.T, tags []hubTag) *fakeHub {
	h := &fakeHub{t: t, ns: "smartcontract", name: "chainlink", tags: tags, pageSize: hubPageSize}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	n := int(h.requests.Add(1))
	h.mu.Lock()
	h.paths = append(h.paths, r.URL.RequestURI())
	intercept, tags := h.intercept, h.tags
	h.mu.Unlock()
	if intercept != nil && intercept(n, w, r) {
		return
	}
	prefix := fmt.Sprintf("/v2/namespaces/%s/repositories/%s/tags", h.ns, h.name)
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	switch {
	case !ok:
		http.Error(w, `{"message":"object not found"}`, http.StatusNotFound)
	case rest == "":
		h.servePage(w, r, tags)
	default:
		name := strings.TrimPrefix(rest, "/")
		for _, tag := range tags {
			if tag.Name == name {
				writeJSON(w, tag)
				return
			}
		}
		http.Error(w, `{"message":"object not found"}`, http.StatusNotFound)
	}
}

// set changes the fake between resolutions.
func (h *fakeHub) set(f func(h *fakeHub)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

func (h *fakeHub) requested() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.paths...)
}

func (h *fakeHub) servePage(w http.ResponseWriter, r *http.Request, tags []hubTag) {
	if got := r.URL.Query().Get("page_size"); got != "100" {
		h.t.Errorf("tag list asked with page_size=%q, want 100", got)
	}
	page := 1
	if p := r.URL.Query().Get("page"); p != "" {
		page, _ = strconv.Atoi(p)
	}
	lo := min((page-1)*h.pageSize, len(tags))
	hi := min(lo+h.pageSize, len(tags))
	var next *string
	if hi < len(tags) {
		n := fmt.Sprintf("%s%s?page=%d&page_size=100", h.srv.URL, r.URL.Path, page+1)
		next = &n
	}
	if h.next != nil {
		def := ""
		if next != nil {
			def = *next
		}
		n := h.next(page, def)
		next = &n
	}
	writeJSON(w, map[string]any{"count": len(tags), "next": next, "results": tags[lo:hi]})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// hubOptions are options for the fake hub with short retry waits, on linux/amd64.
func hubOptions(t *testing.T, hubURL string) Options {
	return Options{
		Repository: "smartcontract/chainlink",
		HubURL:     hubURL,
		Arch:       "amd64",
		OS:         "linux",
		StateDir:   t.TempDir(),
		Timeout:    5 * time.Second,
		Logger:     zaptest.NewLogger(t),
		retry:      retryPolicy{waitMin: time.Millisecond, waitMax: 20 * time.Millisecond},
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestHubNewestRelease: the choice of the newest release against tag lists as Docker Hub publishes them.
// headN1 is what the old `jq -r '.results[].name' | head -n 1` took: the first tag by push order.
func TestHubNewestRelease(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tags   []hubTag
		major  uint64
		headN1 string
		want   string
	}{
		{
			name:   "BackportPushedAfterNewerRelease",
			tags:   hubTags("1.13.4", "2.9.1", "2.9.0", "1.13.3"),
			headN1: "1.13.4", want: "2.9.1",
		},
		{
			name: "SuffixedAndOtherTagsAreNotReleases",
			tags: hubTags("2.10.0-root", "2.10.0-nonroot", "2.10.0-rc.1", "2.10.0-beta.0", "latest", "sha-abc1234",
				"2.10.0-ccip1.5.0", "2.9.1-plugins", "develop", "release-2.10", "v2.11.0", "2.11", "02.12.0", "3.0.0+build.1",
				"2.9.1", "2.9.1-root", "2.9.0"),
			headN1: "2.10.0-root", want: "2.9.1",
		},
		{
			name:   "SemverNotLexicalOrder",
			tags:   hubTags("2.9.0", "2.10.0", "2.8.0"),
			headN1: "2.9.0", want: "2.10.0",
		},
		{
			name:   "StaleLatest",
			tags:   hubTags("latest", "2.8.0", "2.9.0"),
			headN1: "latest", want: "2.9.0",
		},
		{
			name:   "NewestReleaseWithoutAmd64",
			tags:   append([]hubTag{armOnly(hubTags("2.10.0")[0])}, hubTags("2.9.1", "2.9.0")...),
			headN1: "2.10.0", want: "2.9.1",
		},
		{
			name:   "WithinMajor",
			tags:   hubTags("2.9.1", "1.13.4", "1.9.0", "1.13.3"),
			major:  1,
			headN1: "2.9.1", want: "1.13.4",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newFakeHub(t, tc.tags)
			o := hubOptions(t, hub.srv.URL)
			o.Major = tc.major
			img, err := Resolve(testContext(t), o)
			if err != nil {
				t.Fatal(err)
			}
			if tc.tags[0].Name != tc.headN1 {
				t.Fatalf("head -n 1 of the listing is %q, table says %q", tc.tags[0].Name, tc.headN1)
			}
			t.Logf("head -n 1 would run %q; we run %s", tc.headN1, img)
			if img.Tag != tc.want || img.Digest != fakeDigest(tc.want) {
				t.Fatalf("got %s, want tag %s digest %s", img, tc.want, fakeDigest(tc.want))
			}
			if img.Tag == tc.headN1 {
				t.Fatalf("the case does not tell us from head -n 1")
			}
			if want := "smartcontract/chainlink:" + tc.want + "@" + fakeDigest(tc.want); img.String() != want {
				t.Fatalf("String() = %q, want %q", img.String(), want)
			}
			if img.Ref() != "smartcontract/chainlink@"+fakeDigest(tc.want) || img.FromCache {
				t.Fatalf("Ref() = %q FromCache=%v", img.Ref(), img.FromCache)
			}
		})
	}
}

func TestHubNoRelease(t *testing.T) {
	t.Parallel()
	t.Run("NoXYZTag", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, hubTags("latest", "2.10.0-rc.1", "sha-abc"))
		_, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if !errors.Is(err, ErrNoRelease) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want ErrNoRelease", err)
		}
	})
	t.Run("NoneForThisArch", func(t *testing.T) {
		t.Parallel()
		tags := hubTags("2.10.0", "2.9.0")
		tags[0], tags[1] = armOnly(tags[0]), armOnly(tags[1])
		hub := newFakeHub(t, tags)
		_, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if !errors.Is(err, ErrNoRelease) || !strings.Contains(err.Error(), "2.10.0, 2.9.0") {
			t.Fatalf("err = %v, want ErrNoRelease naming the skipped releases", err)
		}
	})
	t.Run("NoneInMajor", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, hubTags("2.10.0", "1.13.3"))
		o := hubOptions(t, hub.srv.URL)
		o.Major = 3
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrNoRelease) || !strings.Contains(err.Error(), "within major 3") {
			t.Fatalf("err = %v, want ErrNoRelease within major 3", err)
		}
	})
}

// manyTags is a long listing: sha- and suffixed tags around releases, the highest release listed last.
func manyTags(n int) []hubTag {
	var names []string
	for i := 0; len(names) < n-1; i++ {
		names = append(names, fmt.Sprintf("sha-%07x", i), fmt.Sprintf("2.%d.0-root", i%40), fmt.Sprintf("2.%d.%d", i%20, i%7))
	}
	names = append(names[:n-1], "2.20.1")
	return hubTags(names...)
}

func TestHubPagination(t *testing.T) {
	t.Parallel()
	t.Run("FollowsNextToTheLastPage", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, manyTags(250))
		hub.pageSize = 7 // the real Hub gives 100; smaller pages make many of them
		img, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		if img.Tag != "2.20.1" {
			t.Fatalf("got %s, want 2.20.1 (on the last page)", img)
		}
		if got, want := int(hub.requests.Load()), (250+6)/7; got != want {
			t.Fatalf("%d requests, want %d pages and no more", got, want)
		}
	})
	t.Run("LoopGuard", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, manyTags(30))
		hub.pageSize = 10
		hub.next = func(page int, def string) string { // page 3 links back to page 2
			if page == 3 {
				return hub.srv.URL + "/v2/namespaces/smartcontract/repositories/chainlink/tags?page=2&page_size=100"
			}
			return def
		}
		_, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if err == nil || !strings.Contains(err.Error(), "pagination loop") || errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want a pagination loop error", err)
		}
		if n := hub.requests.Load(); n != 3 {
			t.Fatalf("%d requests, want 3", n)
		}
	})
	t.Run("NextToAnotherHostRefused", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, manyTags(30))
		hub.pageSize = 10
		hub.next = func(int, string) string { return "http://hub.example.invalid/v2/x?page=2" }
		_, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("err = %v, want the foreign next link refused", err)
		}
	})
	t.Run("MaxPagesBound", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, manyTags(100))
		hub.pageSize = 10
		o := hubOptions(t, hub.srv.URL)
		o.MaxPages = 4
		_, err := Resolve(testContext(t), o)
		if err == nil || !strings.Contains(err.Error(), "more than 4 pages") {
			t.Fatalf("err = %v, want the page bound", err)
		}
		if n := hub.requests.Load(); n != 4 {
			t.Fatalf("%d requests, want 4", n)
		}
	})
}

func TestHubPinnedTag(t *testing.T) {
	t.Parallel()
	tags := hubTags("2.10.0", "2.10.0-root", "latest")
	t.Run("SuffixedTagAllowed", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		o := hubOptions(t, hub.srv.URL)
		o.Tag = "2.10.0-root"
		img, err := Resolve(testContext(t), o)
		if err != nil {
			t.Fatal(err)
		}
		if img.Tag != "2.10.0-root" || img.Digest != fakeDigest("2.10.0-root") {
			t.Fatalf("got %s", img)
		}
		if p := hub.requested(); len(p) != 1 || p[0] != "/v2/namespaces/smartcontract/repositories/chainlink/tags/2.10.0-root" {
			t.Fatalf("requests %v, want the one tag record only", p)
		}
		v, err := img.Version()
		if err != nil || v.Major() != 2 {
			t.Fatalf("Version() = %v, %v", v, err)
		}
	})
	t.Run("MissingTagIsNotRetried", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		o := hubOptions(t, hub.srv.URL)
		o.Tag = "9.9.9"
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrTagNotFound) || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "status 404") {
			t.Fatalf("err = %v, want ErrTagNotFound with status 404", err)
		}
		if n := hub.requests.Load(); n != 1 {
			t.Fatalf("%d requests, want 1 (a 404 is not retried)", n)
		}
	})
	t.Run("PinnedTagWithoutAmd64", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, []hubTag{armOnly(tags[0])})
		o := hubOptions(t, hub.srv.URL)
		o.Tag = "2.10.0"
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "has: linux/arm64") {
			t.Fatalf("err = %v, want ErrNoPlatform", err)
		}
	})
}

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
