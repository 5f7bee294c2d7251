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
