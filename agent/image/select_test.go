package image

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestReleaseVersion(t *testing.T) {
	t.Parallel()
	releases := []string{"0.0.0", "1.13.4", "2.10.0", "10.20.30"}
	notReleases := []string{"", "latest", "develop", "sha-abc1234", "v2.10.0", "2.10", "2", "2.10.0.1", "02.10.0",
		"2.010.0", "2.10.00", "2.10.0-root", "2.10.0-nonroot", "2.10.0-rc.1", "2.10.0-beta.0", "2.10.0-ccip1.5.0",
		"2.9.1-plugins", "2.10.0+build.5", "2..0", ".1.2", "1.2.", "99999999999999999999.0.0", "2.10.0 "}
	for _, s := range releases {
		if v, ok := releaseVersion(s); !ok || v.Original() != s {
			t.Errorf("%q: not taken as a release", s)
		}
	}
	for _, s := range notReleases {
		if _, ok := releaseVersion(s); ok {
			t.Errorf("%q: taken as a release", s)
		}
	}
}

func TestRankReleases(t *testing.T) {
	t.Parallel()
	tags := []string{"1.13.4", "2.10.0-rc.1", "2.9.1", "latest", "2.10.0", "1.9.0", "2.9.1", "2.2.0", "3.0.0-beta.0"}
	names := func(rs []release) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.tag)
		}
		return out
	}
	if got, want := names(rankReleases(tags, 0)), []string{"2.10.0", "2.9.1", "2.2.0", "1.13.4", "1.9.0"}; !slices.Equal(got, want) {
		t.Errorf("any major: %v, want %v", got, want)
	}
	if got, want := names(rankReleases(tags, 1)), []string{"1.13.4", "1.9.0"}; !slices.Equal(got, want) {
		t.Errorf("major 1: %v, want %v", got, want)
	}
	if got := rankReleases(tags, 3); len(got) != 0 {
		t.Errorf("major 3: %v, want none (3.0.0-beta.0 is no release)", names(got))
	}
}

// BenchmarkSelectNewest ranks a listing the size of smartcontract/chainlink's: thousands of tags, most of them
// not releases, in push order.
func BenchmarkSelectNewest(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var tags []string
	for i := 0; len(tags) < 5000; i++ {
		v := fmt.Sprintf("%d.%d.%d", 1+r.IntN(2), r.IntN(30), r.IntN(8))
		tags = append(tags, v, v+"-root", v+"-nonroot", fmt.Sprintf("%s-rc.%d", v, r.IntN(3)),
			fmt.Sprintf("sha-%07x", r.Uint32()), fmt.Sprintf("%s-ccip1.%d.0", v, r.IntN(6)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rs := rankReleases(tags, 2); len(rs) == 0 {
			b.Fatal("no release")
		}
	}
}
