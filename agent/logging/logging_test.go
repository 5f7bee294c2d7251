package logging

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestRedactorMasksEveryForm(t *testing.T) {
	const secret = `p@ss:w/rd?#%"\<tag>&-0123456789`
	var out bytes.Buffer
	log := New(&out, "debug")
	Register(secret, "short") // too short to scrub: ordinary words must survive

	log.Info("raw "+secret, zap.String("field", secret), zap.Error(errors.New("dial postgresql://u:"+url.QueryEscape(secret)+"@h")))
	log.Info("path "+url.PathEscape(secret), zap.Any("nested", map[string]string{"k": secret}))
	var other bytes.Buffer
	_, _ = NewRedactor(&other).Write([]byte("printed " + secret + " and short\n"))

	for _, text := range []string{out.String(), other.String()} {
		for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), `p@ss:w/rd?#%\"\\<tag>&`} {
			if strings.Contains(text, form) {
				t.Errorf("output holds the secret as %q:\n%s", form, text)
			}
		}
		if !strings.Contains(text, Mask) {
			t.Errorf("nothing masked in:\n%s", text)
		}
	}
	if !strings.Contains(other.String(), "short") {
		t.Error("a value below the minimum length was scrubbed from ordinary text")
	}
}

// TestRegisteredLaterStillMasks: a writer made before a value was learned (main's stderr, made at start) masks it.
func TestRegisteredLaterStillMasks(t *testing.T) {
	var out bytes.Buffer
	w := NewRedactor(&out)
	Register("rotated-secret-value-123")
	_, _ = w.Write([]byte("x rotated-secret-value-123 y"))
	if strings.Contains(out.String(), "rotated-secret-value-123") {
		t.Fatalf("a value registered after the writer was made was not masked: %s", out.String())
	}
}
