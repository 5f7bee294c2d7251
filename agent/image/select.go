package image

import (
	"fmt"
	"slices"

	"github.com/Masterminds/semver/v3"
)

// release is a tag that names a stable release, with its version.
type release struct {
	tag string
	v   *semver.Version
}

// releaseVersion parses a tag that names a stable release: strictly X.Y.Z, decimal numbers without leading
// zeros. Anything else is not a release: "v2.10.0", "2.10", "2.10.0-root", "2.10.0-rc.1", "2.10.0+build",
// "latest", "sha-…", branch names.
func releaseVersion(tag string) (*semver.Version, bool) {
	dots := 0
	for i := 0; i < len(tag); i++ {
		switch c := tag[i]; {
		case c == '.':
			dots++
		case c < '0' || c > '9':
			return nil, false
		}
	}
	if dots != 2 {
		return nil, false
	}
	v, err := semver.StrictNewVersion(tag) // leading zeros, empty parts, overflow
	if err != nil {
		return nil, false
	}
	return v, true
}

// rankReleases keeps the stable releases among tags, within major unless it is 0, highest version first.
// Duplicates (a tag seen twice while pages shifted under a listing) count once.
func rankReleases(tags []string, major uint64) []release {
	var out []release
	for _, t := range tags {
		v, ok := releaseVersion(t)
		if !ok || (major != 0 && v.Major() != major) {
			continue
		}
		out = append(out, release{tag: t, v: v})
	}
	slices.SortFunc(out, func(a, b release) int { return b.v.Compare(a.v) })
	return slices.CompactFunc(out, func(a, b release) bool { return a.tag == b.tag })
}

// pageGuard bounds a paginated tag listing: at most max pages, and no page visited twice (a "next" link that loops).
type pageGuard struct {
	op   string
	max  int
	seen map[string]bool
}

func newPageGuard(op string, max int) *pageGuard {
	return &pageGuard{op: op, max: max, seen: make(map[string]bool)}
}

// visit admits page number page at url, or says why the listing must stop; tags is how many were read so far.
func (g *pageGuard) visit(url string, page, tags int) error {
	if page > g.max {
		return fmt.Errorf("%s: more than %d pages (%d tags so far); refusing to choose from a partial list: pin image.tag",
			g.op, g.max, tags)
	}
	if g.seen[url] {
		return fmt.Errorf("%s: page %d links back to %s (pagination loop)", g.op, page, redactURL(url))
	}
	g.seen[url] = true
	return nil
}
