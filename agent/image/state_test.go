package image

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestSaveImageAtomic(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state") // created on first save
	first := Image{Repository: "smartcontract/chainlink", Tag: "2.9.0", Digest: fakeDigest("2.9.0"), ResolvedAt: time.Now()}
	second := Image{Repository: "smartcontract/chainlink", Tag: "2.10.0", Digest: fakeDigest("2.10.0"), ResolvedAt: time.Now()}
	for _, img := range []Image{first, second} {
		if err := saveImage(dir, img); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "image.json" {
		t.Fatalf("state dir holds %v, want image.json alone (no temp files left)", entries)
	}
	fi, err := os.Stat(filepath.Join(dir, "image.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("image.json: %v mode %v, want 0600", err, fi.Mode())
	}
	raw, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"repository", "tag", "digest", "resolved_at"} {
		if _, ok := fields[k]; !ok {
			t.Fatalf("image.json lacks %q: %s", k, raw)
		}
	}
	got, err := loadImage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tag != "2.10.0" || got.Digest != second.Digest || !got.ResolvedAt.Equal(second.ResolvedAt) || !got.FromCache {
		t.Fatalf("loaded %+v, want the second choice from cache", got)
	}
}

func TestLoadImageRejectsBadState(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"NotJSON":    "{",
		"BadDigest":  `{"repository":"a/b","tag":"1.0.0","digest":"sha256:xyz","resolved_at":"2025-01-01T00:00:00Z"}`,
		"NoTag":      `{"repository":"a/b","digest":"` + fakeDigest("x") + `","resolved_at":"2025-01-01T00:00:00Z"}`,
		"NoResolved": `{"repository":"a/b","tag":"1.0.0","digest":"` + fakeDigest("x") + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "image.json"), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if img, err := loadImage(dir); err == nil {
				t.Fatalf("loaded %+v from a bad file", img)
			}
		})
	}
}

// TestFallback: the last good choice stands in only when the source cannot be reached and the choice was
// made for the same settings.
func TestFallback(t *testing.T) {
	t.Parallel()
	tags := hubTags("2.9.0", "2.10.0-root", "2.10.0", "1.13.3")

	// resolveThenDown resolves once against a working hub (saving the choice), then takes the hub down.
	resolveThenDown := func(t *testing.T, first Options) (Options, Image) {
		hub := newFakeHub(t, tags)
		first.HubURL = hub.srv.URL
		img, err := Resolve(testContext(t), first)
		if err != nil {
			t.Fatal(err)
		}
		hub.srv.Close() // connection refused from now on
		return first, img
	}

	t.Run("HubDownUsesSavedChoice", func(t *testing.T) {
		t.Parallel()
		o, saved := resolveThenDown(t, hubOptions(t, ""))
		core, logs := observer.New(zap.WarnLevel)
		o.Logger = zap.New(core)
		img, err := Resolve(testContext(t), o)
		if err != nil {
			t.Fatal(err)
		}
		if !img.FromCache || img.Tag != "2.10.0" || img.Digest != saved.Digest || !img.ResolvedAt.Equal(saved.ResolvedAt) {
			t.Fatalf("got %+v, want the saved %+v from cache", img, saved)
		}
		warn := logs.FilterMessageSnippet("last good choice").All()
		if len(warn) != 1 || warn[0].ContextMap()["age"] == nil || warn[0].ContextMap()["image"] != saved.String() {
			t.Fatalf("warnings %v, want one naming the image and its age", logs.All())
		}
	})
	t.Run("HubDownPinnedTagUsesSavedChoice", func(t *testing.T) {
		t.Parallel()
		o := hubOptions(t, "")
		o.Tag = "2.10.0-root"
		o, saved := resolveThenDown(t, o)
		img, err := Resolve(testContext(t), o)
		if err != nil || !img.FromCache || img.String() != saved.String() {
			t.Fatalf("got %+v, %v; want the saved %s", img, err, saved)
		}
	})
	t.Run("HubDownNoSavedChoice", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.srv.Close()
		_, err := Resolve(testContext(t), hubOptions(t, hub.srv.URL))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no saved choice to fall back to") {
			t.Fatalf("err = %v, want unreachable with no saved choice", err)
		}
		t.Logf("error: %v", err)
	})
	t.Run("HubDownNoStateDir", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		hub.srv.Close()
		o := hubOptions(t, hub.srv.URL)
		o.StateDir = ""
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no state directory") {
			t.Fatalf("err = %v, want unreachable and no state directory", err)
		}
	})

	mismatches := []struct {
		name   string
		change func(*Options)
		why    string
	}{
		{"OtherRepository", func(o *Options) { o.Repository = "smartcontract/other" }, "it is for repository"},
		{"NowPinnedToAnotherTag", func(o *Options) { o.Tag = "2.9.0" }, `image.tag is "2.9.0"`},
		{"NowWithinAnotherMajor", func(o *Options) { o.Major = 1 }, "image.major is 1"},
	}
	for _, m := range mismatches {
		t.Run("SavedChoiceDoesNotApply/"+m.name, func(t *testing.T) {
			t.Parallel()
			o, _ := resolveThenDown(t, hubOptions(t, ""))
			m.change(&o)
			_, err := Resolve(testContext(t), o)
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), m.why) {
				t.Fatalf("err = %v, want unreachable and %q", err, m.why)
			}
		})
	}
	t.Run("SavedPinnedSuffixTagDoesNotServeUnpinned", func(t *testing.T) {
		t.Parallel()
		o := hubOptions(t, "")
		o.Tag = "2.10.0-root"
		o, _ = resolveThenDown(t, o)
		o.Tag = ""
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "not an X.Y.Z release") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("MissingPinnedTagNeverFallsBack", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		o := hubOptions(t, hub.srv.URL)
		o.Tag = "2.9.0"
		if _, err := Resolve(testContext(t), o); err != nil {
			t.Fatal(err)
		}
		hub.set(func(h *fakeHub) { h.tags = nil }) // the tag was deleted: 404 is an answer, not an outage
		_, err := Resolve(testContext(t), o)
		if !errors.Is(err, ErrTagNotFound) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want ErrTagNotFound without fallback", err)
		}
	})
	t.Run("RateLimitedFallsBack", func(t *testing.T) {
		t.Parallel()
		hub := newFakeHub(t, tags)
		o := hubOptions(t, hub.srv.URL)
		saved, err := Resolve(testContext(t), o)
		if err != nil {
			t.Fatal(err)
		}
		hub.set(func(h *fakeHub) {
			h.intercept = failFirst(1000, http.StatusTooManyRequests, http.Header{"Retry-After": {"0"}})
		})
		img, err := Resolve(testContext(t), o)
		if err != nil || !img.FromCache || img.Digest != saved.Digest {
			t.Fatalf("got %+v, %v; want the saved choice", img, err)
		}
	})
}
