package secrets

import (
	"strings"
	"testing"
)

func TestSecretNeverFormats(t *testing.T) {
	s := testSecrets()
	for _, out := range []string{
		s.APIPassword.String(), s.APIPassword.GoString(),
		sprintf("%v %+v %#v %s %q", s, s, s, s.KeystorePassword, s.DatabasePassword),
		mustJSON(t, s),
	} {
		for _, v := range s.Values() {
			if strings.Contains(out, v) {
				t.Fatalf("secret value in %q", out)
			}
		}
	}
}
