package image

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

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
