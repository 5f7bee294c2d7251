package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// fakeRegistry plays a registry's /v2 API behind a Bearer token challenge, as ECR Public and Docker Hub's
// registry do: every /v2 request needs the token that /token hands out for the repository's pull scope.
type fakeRegistry struct {
	t        *testing.T
	srv      *httptest.Server
	name     string
	pageSize int
	basic    bool // challenge with Basic instead of Bearer

	mu    sync.Mutex
	tags  []string          // tags/list order (a registry lists them sorted)
	byTag map[string]string // tag → manifest digest
	blobs map[string]fakeBlob
	lie   map[string]string // tag → a Docker-Content-Digest that is not the manifest's

	tokenRequests atomic.Int32
	requests      atomic.Int32
	calls         []string // "METHOD path"
}

type fakeBlob struct {
	mediaType string
	body      []byte
}

const fakeToken = "fake-token-never-logged"

func newFakeRegistry(t *testing.T) *fakeRegistry {
	f := &fakeRegistry{t: t, name: "chainlink/chainlink", pageSize: registryPageSize,
		byTag: map[string]string{}, blobs: map[string]fakeBlob{}, lie: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegistry) put(mediaType string, v any) string {
	body, err := json.Marshal(v)
	if err != nil {
		f.t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	d := "sha256:" + hex.EncodeToString(sum[:])
	f.blobs[d] = fakeBlob{mediaType, body}
	return d
}

// image stores a single-platform image (config blob + Docker v2 manifest) and returns its manifest digest.
func (f *fakeRegistry) image(arch, salt string) string {
	cfg := f.put("application/vnd.docker.container.image.v1+json",
		map[string]any{"architecture": arch, "os": "linux", "config": map[string]any{"Labels": map[string]string{"salt": salt}}})
	return f.put(mediaDockerManifest, map[string]any{
		"schemaVersion": 2, "mediaType": mediaDockerManifest,
		"config": map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 1},
	})
}

// tagImage tags a single-platform image.
func (f *fakeRegistry) tagImage(tag, arch string) string {
	d := f.image(arch, tag)
	f.tag(tag, d)
	return d
}

// tagIndex tags an OCI index over one image per arch.
func (f *fakeRegistry) tagIndex(tag string, archs ...string) string {
	var ms []map[string]any
	for _, a := range archs {
		ms = append(ms, map[string]any{"mediaType": mediaDockerManifest, "digest": f.image(a, tag), "size": 1,
			"platform": map[string]string{"architecture": a, "os": "linux"}})
	}
	// An attestation manifest, as buildx adds: not a platform.
	ms = append(ms, map[string]any{"mediaType": mediaOCIManifest, "digest": fakeDigest(tag + "/att"), "size": 1,
		"platform": map[string]string{"architecture": "unknown", "os": "unknown"}})
	d := f.put(mediaOCIIndex, map[string]any{"schemaVersion": 2, "mediaType": mediaOCIIndex, "manifests": ms})
	f.tag(tag, d)
	return d
}

func (f *fakeRegistry) tag(tag, digest string) {
	f.byTag[tag] = digest
	f.tags = append(f.tags, tag)
	slices.Sort(f.tags)
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)

	if r.URL.Path == "/token" {
		f.tokenRequests.Add(1)
		q := r.URL.Query()
		if q.Get("service") != "fake-registry" || q.Get("scope") != "repository:"+f.name+":pull" || r.Header.Get("Authorization") != "" {
			http.Error(w, `{"errors":[{"code":"DENIED"}]}`, http.StatusForbidden)
			return
		}
		writeJSON(w, map[string]any{"token": fakeToken, "expires_in": 300})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+fakeToken {
		if f.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		} else {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="fake-registry",scope="repository:%s:pull"`, f.srv.URL, f.name))
		}
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/"+f.name+"/")
	switch {
	case !ok:
		http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN"}]}`, http.StatusNotFound)
	case rest == "tags/list":
		f.serveTags(w, r)
	case strings.HasPrefix(rest, "manifests/"):
		ref := strings.TrimPrefix(rest, "manifests/")
		for _, mt := range []string{mediaOCIIndex, mediaDockerList, mediaOCIManifest, mediaDockerManifest} {
			if !strings.Contains(r.Header.Get("Accept"), mt) {
				f.t.Errorf("manifest request without Accept %s", mt)
			}
		}
		d, isTag := f.byTag[ref]
		if !isTag {
			d = ref
		}
		b, found := f.blobs[d]
		if !found {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		if l, lies := f.lie[ref]; lies {
			d = l
		}
		w.Header().Set("Docker-Content-Digest", d)
		f.serveBlob(w, r, b)
	case strings.HasPrefix(rest, "blobs/"):
		b, found := f.blobs[strings.TrimPrefix(rest, "blobs/")]
		if !found {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		f.serveBlob(w, r, b)
	default:
		http.Error(w, "not here", http.StatusNotFound)
	}
}

func (f *fakeRegistry) serveBlob(w http.ResponseWriter, r *http.Request, b fakeBlob) {
	w.Header().Set("Content-Type", b.mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b.body)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(b.body)
	}
}

// serveTags pages like distribution: n per page, resuming after `last`, a relative Link to the next page.
func (f *fakeRegistry) serveTags(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("n") != strconv.Itoa(registryPageSize) {
		f.t.Errorf("tags/list asked with n=%q", r.URL.Query().Get("n"))
	}
	start := 0
	if last := r.URL.Query().Get("last"); last != "" {
		start = slices.Index(f.tags, last) + 1
	}
	end := min(start+f.pageSize, len(f.tags))
	if end < len(f.tags) {
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?last=%s&n=%d>; rel="next"`, f.name, f.tags[end-1], registryPageSize))
	}
	writeJSON(w, map[string]any{"name": f.name, "tags": f.tags[start:end]})
}

func (f *fakeRegistry) called(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

func registryOptions(t *testing.T, f *fakeRegistry) Options {
	o := hubOptions(t, "http://hub.invalid") // the hub must not be asked
	o.Repository = strings.TrimPrefix(f.srv.URL, "http://") + "/" + f.name
	return o
}

func TestFakeRegistry(t *testing.T) {
	t.Parallel()

	t.Run("NewestReleaseWithPlatform", func(t *testing.T) {
		t.Parallel()
		f := newFakeRegistry(t)
		f.pageSize = 2 // several pages, following Link
		f.tagImage("1.2.3", "amd64")
		want := f.tagIndex("1.10.0", "amd64", "arm64")
		f.tagIndex("1.11.0", "arm64") // the newest release has no amd64 image
		f.tagImage("1.12.0-rc.1", "amd64")
		f.tagImage("latest", "amd64")
		f.tagImage("sha-abc1234", "amd64")
		o := registryOptions(t, f)
		img, err := Resolve(testContext(t), o)
		if err != nil {
			t.Fatal(err)
		}
		if img.Tag != "1.10.0" || img.Digest != want || img.Repository != o.Repository {
			t.Fatalf("got %s, want 1.10.0@%s", img, want)
		}
		if n := f.tokenRequests.Load(); n != 1 {
			t.Fatalf("%d token requests, want 1 (the token is kept)", n)
		}
		if f.called("HEAD /v2/chainlink/chainlink/manifests/1.11.0") != 1 || f.called("GET /v2/chainlink/chainlink/tags/list") != 4 { // 401, then 3 pages
			t.Fatalf("calls %v", f.calls)
		}
	})
	t.Run("PinnedSingleManifestChecksConfig", func(t *testing.T) {
		t.Parallel()
		f := newFakeRegistry(t)
		want := f.tagImage("1.2.3", "amd64")
		o := registryOptions(t, f)
		o.Tag = "1.2.3"
		img, err := Resolve(testContext(t), o)
		if err != nil || img.Digest != want {
			t.Fatalf("got %s, %v; want digest %s", img, err, want)
		}
		if f.called("GET /v2/chainlink/chainlink/tags/list") != 0 {
			t.Fatalf("a pinned tag listed the tags: %v", f.calls)
		}
		o.Arch = "arm64"
		if _, err := Resolve(testContext(t), o); !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "has: linux/amd64") {
			t.Fatalf("err = %v, want ErrNoPlatform from the config blob", err)
		}
	})
	t.Run("PinnedMissingIsNotRetried", func(t *testing.T) {
		t.Parallel()
		f := newFakeRegistry(t)
		f.tagImage("1.2.3", "amd64")
		o := registryOptions(t, f)
		o.Tag = "9.9.9"
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrTagNotFound) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want ErrTagNotFound", err)
		}
		if n := f.requests.Load(); n != 3 { // 401, token, 404
			t.Fatalf("%d requests, want 3: %v", n, f.calls)
		}
	})
	t.Run("DigestThatDoesNotMatchContentIsRefused", func(t *testing.T) {
		t.Parallel()
		f := newFakeRegistry(t)
		real := f.tagImage("1.2.3", "amd64")
		forged := fakeDigest("forged")
		f.blobs[forged] = f.blobs[real]
		f.lie["1.2.3"] = forged
		_, err := Resolve(testContext(t), registryOptions(t, f))
		if err == nil || !strings.Contains(err.Error(), "content has digest "+real) {
			t.Fatalf("err = %v, want a digest mismatch", err)
		}
	})
	t.Run("OnlyAnonymousBearer", func(t *testing.T) {
		t.Parallel()
		f := newFakeRegistry(t)
		f.basic = true
		f.tagImage("1.2.3", "amd64")
		_, err := Resolve(testContext(t), registryOptions(t, f))
		if err == nil || !strings.Contains(err.Error(), "only anonymous Bearer tokens") || errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("TokenNeverInErrorsOrLogs", func(t *testing.T) {
		t.Parallel()
		f := newFakeRegistry(t)
		f.tagImage("1.2.3", "amd64")
		o := registryOptions(t, f)
		var logged strings.Builder
		o.Logger = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
			zapcore.AddSync(&logged), zap.DebugLevel))
		if _, err := Resolve(testContext(t), o); err != nil {
			t.Fatal(err)
		}
		o.Tag = "4.5.6"
		_, err := Resolve(testContext(t), o)
		if err == nil || strings.Contains(err.Error(), fakeToken) || strings.Contains(logged.String(), fakeToken) {
			t.Fatalf("the token leaked: err=%v logs=%s", err, logged.String())
		}
		if !strings.Contains(logged.String(), "image resolved") {
			t.Fatalf("nothing logged: %s", logged.String())
		}
	})
}

func TestParseChallenge(t *testing.T) {
	t.Parallel()
	scheme, p := parseChallenge(`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push", error=insufficient_scope`)
	if scheme != "Bearer" || p["realm"] != "https://auth.docker.io/token" || p["service"] != "registry.docker.io" ||
		p["scope"] != "repository:a/b:pull,push" || p["error"] != "insufficient_scope" {
		t.Fatalf("scheme %q params %v", scheme, p)
	}
	if _, p := parseChallenge(`Bearer realm="a\"b"`); p["realm"] != `a"b` {
		t.Fatalf("escaped quote: %v", p)
	}
}
