package container

import (
	"testing"
	"time"
)

func TestRestartBackoff(t *testing.T) {
	t.Parallel()
	b := newBackoff(100*time.Millisecond, time.Second)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, w := range want {
			w *= time.Millisecond
			if d := b.Delay(); d < w/2 || d >= w {
				t.Fatalf("round %d delay %d = %s; want in [%s, %s)", round, i, d, w/2, w)
			}
		}
		b.Reset() // the second round starts from the initial delay again
	}
}

func TestHalfJitterSpreads(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[halfJitter(time.Second)] = true
	}
	if len(seen) < 50 {
		t.Errorf("100 draws gave %d distinct delays; hosts failing together would retry together", len(seen))
	}
}
