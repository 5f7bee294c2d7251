package keyring

import (
	"testing"
)

// TestDecideRemembersItsVerdicts: the same ring and password are derived once, whatever the verdict; another
// password, or the ring re-sealed (new bytes, the same password), is derived afresh, and still decided right.
func TestDecideRemembersItsVerdicts(t *testing.T) {
	ring := marshal(t, seal(t, right, 1<<10, 8, 1))
	resealed := marshal(t, seal(t, right, 1<<10, 8, 1)) // a new salt: other bytes
	for _, step := range []struct {
		name     string
		raw      []byte
		password string
		want     Verdict
		derives  bool
	}{
		{"FirstCheck", ring, right, Opens, true},
		{"SameAgain", ring, right, Opens, false},
		{"AnotherPassword", ring, wrong, DoesNotOpen, true},
		{"AnotherPasswordAgain", ring, wrong, DoesNotOpen, false},
		{"ResealedRing", resealed, right, Opens, true},
		{"ResealedRingWrongPassword", resealed, wrong, DoesNotOpen, true},
	} {
		before := derivations.Load()
		got, err := check(t, step.raw, step.password)
		if err != nil || got != step.want {
			t.Fatalf("%s: %s, %v; want %s", step.name, got, err, step.want)
		}
		if derived := derivations.Load() > before; derived != step.derives {
			t.Errorf("%s: derived %t; want %t", step.name, derived, step.derives)
		}
	}
}
