// Package logging builds the agent's zap logger: JSON lines on stdout for journald, with a last line of defence
// against leaking secrets. Secret values are redacted at the source (bootstrap.Secret prints as [REDACTED]);
// the Redactor additionally replaces every registered secret value, in its raw, JSON-escaped and URL-escaped
// forms, in every byte the logger or the CLI writes.
package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Mask replaces a secret value in output.
const Mask = "[REDACTED]"

// minSecretLen: shorter values are not scrubbed, to avoid mangling ordinary text. Every real secret is 16+.
const minSecretLen = 6

// Redactor is an io.Writer that scrubs registered secret values before writing to the underlying writer.
type Redactor struct {
	mu     sync.Mutex
	w      io.Writer
	values [][]byte
}

// NewRedactor wraps w.
func NewRedactor(w io.Writer) *Redactor { return &Redactor{w: w} }

// Add registers secret values (and their escaped forms) to scrub from now on.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if len(v) < minSecretLen {
			continue
		}
		for _, form := range forms(v) {
			if !r.has(form) {
				r.values = append(r.values, []byte(form))
			}
		}
	}
}

func (r *Redactor) has(form string) bool {
	for _, v := range r.values {
		if string(v) == form {
			return true
		}
	}
	return false
}

func forms(v string) []string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	jsonForm := strings.TrimSuffix(strings.TrimSuffix(b.String(), "\n"), `"`)[1:]
	return []string{v, jsonForm, url.QueryEscape(v), url.PathEscape(v)}
}

// Write scrubs p and writes it whole.
func (r *Redactor) Write(p []byte) (int, error) {
	if _, err := r.w.Write(r.scrub(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// scrub returns p with every registered value masked.
func (r *Redactor) scrub(p []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.values {
		if bytes.Contains(p, v) {
			p = bytes.ReplaceAll(p, v, []byte(Mask))
		}
	}
	return p
}

// To returns a writer to w that masks the same values as r, now and as more are added.
func (r *Redactor) To(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if _, err := w.Write(r.scrub(p)); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// New returns a JSON logger at level (debug, info, warn, error) writing through r.
func New(r *Redactor, level string) *zap.Logger {
	lvl := zapcore.InfoLevel
	_ = lvl.Set(level)
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(r)), lvl)
	return zap.New(core, zap.AddCaller())
}
