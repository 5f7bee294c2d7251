package secrets

import (
	"crypto/subtle"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"go.uber.org/zap/zapcore"
)

// Secret holds one secret value. It formats as [REDACTED] everywhere (fmt verbs, JSON, zap) so that logging a
// struct that holds one cannot leak it; Reveal is the only way to the value.
type Secret struct {
	value string
	// VersionID is the Secrets Manager version the value came from (not secret); a rotation is a new version
	// with another value.
	VersionID string
}

// NewSecret wraps a value.
func NewSecret(value, versionID string) Secret { return Secret{value: value, VersionID: versionID} }

const redacted = "[REDACTED]"

// Reveal returns the value. Call it only where the value is written for the node.
func (s Secret) Reveal() string { return s.value }

// Empty reports whether the value is empty.
func (s Secret) Empty() bool { return s.value == "" }

// Equal reports whether s and o hold the same value, whatever their version ids (in constant time).
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.value), []byte(o.value)) == 1
}

func (s Secret) String() string                               { return redacted }
func (s Secret) GoString() string                             { return redacted }
func (s Secret) MarshalJSON() ([]byte, error)                 { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error)                 { return []byte(redacted), nil }
func (s Secret) MarshalLogObject(zapcore.ObjectEncoder) error { return nil }

// NodeSecrets are the three values the node needs.
type NodeSecrets struct {
	DatabasePassword Secret
	APIPassword      Secret
	KeystorePassword Secret
}

// Values lists the raw values, for the log redactor.
func (n NodeSecrets) Values() []string {
	return []string{n.DatabasePassword.value, n.APIPassword.value, n.KeystorePassword.value}
}

// Forms lists every way a secret value may be spelled in what the agent writes: raw, percent-encoded as in the
// database URL, and TOML-escaped as in secrets.toml. The log redactor scrubs them all.
func (n NodeSecrets) Forms() []string {
	var out []string
	for _, v := range n.Values() {
		if v == "" {
			continue
		}
		out = append(out, v, PercentEncode(v))
		if b, err := toml.Marshal(map[string]string{"v": v}); err == nil {
			s := strings.TrimSpace(string(b))
			s = strings.TrimPrefix(s, "v = ")
			out = append(out, strings.Trim(s, `'"`))
		}
	}
	return out
}

// PercentEncode encodes every byte but RFC 3986's unreserved characters: how a user name or password is spelled in
// the node's database URL (nodefiles.DatabaseURL), so any password survives any URL parser. Forms lists this
// spelling for the redactor.
func PercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
