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

// TestJournalPriorityPrefix: under journald each line starts with its syslog priority, so `journalctl -p warning`
// finds the warnings; elsewhere the lines are plain JSON.
func TestJournalPriorityPrefix(t *testing.T) {
	var journal, plain bytes.Buffer
	for _, c := range []struct {
		out     *bytes.Buffer
		journal bool
	}{{&journal, true}, {&plain, false}} {
		log := newLogger(c.out, "debug", c.journal).With(zap.String("k", "v"))
		log.Debug("d")
		log.Info("i")
		log.Warn("w")
		log.Error("e")
	}
	lines := strings.Split(strings.TrimSpace(journal.String()), "\n")
	want := []string{"<7>{", "<6>{", "<4>{", "<3>{"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), journal.String())
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, want[i]) || !strings.Contains(l, `"k":"v"`) {
			t.Errorf("line %d = %q, want prefix %q and the logger's fields", i, l, want[i])
		}
	}
	if strings.Contains(plain.String(), "<") {
		t.Errorf("a logger not writing to the journal added priority prefixes:\n%s", plain.String())
	}
}

func TestStdoutIsJournalNeedsTheSameStream(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	if StdoutIsJournal() {
		t.Error("no JOURNAL_STREAM, yet stdout is taken for the journal")
	}
	t.Setenv("JOURNAL_STREAM", "1:1")
	if StdoutIsJournal() {
		t.Error("JOURNAL_STREAM names another stream, yet stdout is taken for the journal")
	}
}
