package bootstrap

import "go.uber.org/zap/zapcore"

// Secret holds one secret value. It formats as [REDACTED] everywhere (fmt verbs, JSON, zap) so that logging a
// struct that holds one cannot leak it; Reveal is the only way to the value.
type Secret struct {
	value string
	// VersionID is the Secrets Manager version the value came from (not secret); rotation compares it.
	VersionID string
}

// NewSecret wraps a value.
func NewSecret(value, versionID string) Secret { return Secret{value: value, VersionID: versionID} }

const redacted = "[REDACTED]"

// Reveal returns the value. Call it only where the value is written for the node.
func (s Secret) Reveal() string { return s.value }

// Empty reports whether the value is empty.
func (s Secret) Empty() bool { return s.value == "" }

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
