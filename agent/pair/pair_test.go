package pair

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/image"
)

// img is an image of the node's repository with a valid digest that n tells apart.
func img(tag string, n int) image.Image {
	return image.Image{Repository: "smartcontract/chainlink", Tag: tag, Digest: fmt.Sprintf("sha256:%064x", n)}
}

// noRelease are tags that cannot be ordered: not a plain X.Y.Z.
var noRelease = []string{"develop", "2.19.0-rc.1", "v2.19.0", "latest", "2.19.0+build.7", "2.19", ""}

func TestCheckDowngrade(t *testing.T) {
	t.Parallel()
	t.Run("OlderReleaseIsRefusedWithExit5NamingBoth", func(t *testing.T) {
		err := CheckDowngrade("2.19.0", img("2.18.3", 1))
		var de *DowngradeError
		if !errors.As(err, &de) || de.Image != "2.18.3" || de.Highest != "2.19.0" {
			t.Fatalf("got %v, want a DowngradeError from 2.19.0 to 2.18.3", err)
		}
		for _, s := range []string{"2.18.3", "2.19.0", "--allow-downgrade"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%q does not name %s", err, s)
			}
		}
		if code := exitcode.Of(fmt.Errorf("upgrade: %w", err)); code != exitcode.Terminal {
			t.Errorf("exit code %d, want %d", code, exitcode.Terminal)
		}
	})
	for _, tc := range []struct {
		name, highest, tag string
	}{
		{"SameRelease", "2.19.0", "2.19.0"},
		{"NewerPatch", "2.19.0", "2.19.1"},
		{"NewerMinorComparedAsNumbers", "2.9.0", "2.10.0"},
		{"NoHighestYet", "", "1.0.0"},
		{"HighestIsNoRelease", "develop", "1.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckDowngrade(tc.highest, img(tc.tag, 1)); err != nil {
				t.Errorf("CheckDowngrade(%q, %q) = %v, want nil", tc.highest, tc.tag, err)
			}
		})
	}
	t.Run("TagThatIsNoReleaseIsLetThrough", func(t *testing.T) {
		for _, tag := range noRelease {
			if err := CheckDowngrade("2.19.0", img(tag, 1)); err != nil {
				t.Errorf("CheckDowngrade(2.19.0, %q) = %v, want nil", tag, err)
			}
		}
	})
}

func TestHigher(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b, want string
	}{
		{"2.19.0", "2.18.0", "2.19.0"},
		{"2.18.0", "2.19.0", "2.19.0"},
		{"2.9.0", "2.10.0", "2.10.0"},
		{"2.19.0", "2.19.0", "2.19.0"},
		{"", "2.19.0", "2.19.0"},
		{"2.19.0", "", "2.19.0"},
		{"", "", ""},
	} {
		if got := Higher(tc.a, tc.b); got != tc.want {
			t.Errorf("Higher(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
	for _, tag := range noRelease {
		for _, tc := range []struct{ a, b, want string }{
			{tag, "2.19.0", "2.19.0"},
			{"2.19.0", tag, "2.19.0"},
			{tag, "", ""},
			{"", tag, ""},
			{tag, tag, ""},
		} {
			if got := Higher(tc.a, tc.b); got != tc.want {
				t.Errorf("Higher(%q, %q) = %q, want %q (a tag that is no release does not count)", tc.a, tc.b, got, tc.want)
			}
		}
	}
}

func TestNewer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tag, current string
		want         bool
	}{
		{"2.20.0", "2.19.0", true},
		{"2.10.0", "2.9.0", true},
		{"2.19.0", "2.19.0", false},
		{"2.18.0", "2.19.0", false},
		{"2.19.0", "", true},
		{"2.19.0", "develop", true}, // a release is newer than what cannot be ordered
	} {
		if got := Newer(tc.tag, tc.current); got != tc.want {
			t.Errorf("Newer(%q, %q) = %v, want %v", tc.tag, tc.current, got, tc.want)
		}
	}
	for _, tag := range noRelease {
		for _, current := range []string{"2.19.0", "1.0.0", "", "develop"} {
			if Newer(tag, current) {
				t.Errorf("Newer(%q, %q) = true; a tag that is no release is never newer", tag, current)
			}
		}
	}
}

func TestPhaseInProgress(t *testing.T) {
	t.Parallel()
	for p, want := range map[Phase]bool{
		Requested: true, Validated: true, Switching: true, Starting: true,
		Done: false, Refused: false, RolledBack: false, Failed: false, "": false,
	} {
		if got := p.InProgress(); got != want {
			t.Errorf("Phase(%q).InProgress() = %v, want %v", p, got, want)
		}
	}
}

func TestRecordAhead(t *testing.T) {
	t.Parallel()
	for p, want := range map[Phase]bool{
		Requested: false, Validated: false, Switching: true, Starting: true,
		Done: false, Refused: false, RolledBack: false, Failed: false, "": false,
	} {
		if got := (Record{Upgrade: Upgrade{Phase: p}}).Ahead(); got != want {
			t.Errorf("Ahead() in %q = %v, want %v", p, got, want)
		}
	}
}
