// Package logging builds the agent's zap logger: JSON lines on stdout for journald, with a last line of defence
// against leaking secrets. Secret values are redacted at the source (bootstrap.Secret prints as [REDACTED]);
// besides, every secret value the process learns is registered here (Register), and every Redactor — the
// logger's output, and main's stdout and stderr — replaces each registered value, in its raw, JSON-escaped and
// URL-escaped forms, in every byte it writes.
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

// registry is the process's set of secret values (in every form) that no Redactor lets through.
var registry struct {
	mu     sync.RWMutex
	values [][]byte
}

// Register adds secret values (and their escaped forms) that every Redactor scrubs from now on.
func Register(values ...string) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	for _, v := range values {
		if len(v) < minSecretLen {
			continue
		}
		for _, form := range forms(v) {
			if !registered(form) {
				registry.values = append(registry.values, []byte(form))
			}
		}
	}
}

func registered(form string) bool {
	for _, v := range registry.values {
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

// scrub returns p with every registered value masked.
func scrub(p []byte) []byte {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	for _, v := range registry.values {
		if bytes.Contains(p, v) {
			p = bytes.ReplaceAll(p, v, []byte(Mask))
		}
	}
	return p
}

// Redactor is an io.Writer that scrubs every registered secret value before writing to the underlying writer.
type Redactor struct{ w io.Writer }

// NewRedactor wraps w.
func NewRedactor(w io.Writer) *Redactor { return &Redactor{w: w} }

// Write scrubs p and writes it whole.
func (r *Redactor) Write(p []byte) (int, error) {
	if _, err := r.w.Write(scrub(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// New returns a JSON logger at level (debug, info, warn, error) writing to w through a Redactor. When stdout is
// journald (StdoutIsJournal), each line carries its level as a journal priority prefix.
func New(w io.Writer, level string) *zap.Logger {
	return newLogger(w, level, StdoutIsJournal())
}

func newLogger(w io.Writer, level string, journal bool) *zap.Logger {
	lvl := zapcore.InfoLevel
	_ = lvl.Set(level)
	cfg := zap.NewProductionEncoderConfig()
	cfg.TimeKey = "ts"
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder = zapcore.NewJSONEncoder(cfg)
	if journal {
		enc = priorityEncoder{enc}
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(NewRedactor(w))), lvl)
	return zap.New(core, zap.AddCaller())
}
