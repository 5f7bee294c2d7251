package image

import (
	"errors"
	"strings"
	"testing"
)

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
