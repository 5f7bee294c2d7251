package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMetricsTokenFile: health.metrics_token_file is checked at load: the file exists, not every user may read it,
// and it holds one non-empty token. No error shows the token.
func TestMetricsTokenFile(t *testing.T) {
	const token = "s3cr3t-metrics-token-0123456789"
	dir := t.TempDir()
	write := func(name, data string, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path string
		says       string // "" accepted
	}{
		{"Accepted", write("ok", token+"\n", 0o600), ""},
		{"GroupReadableAccepted", write("group", token, 0o640), ""},
		{"Missing", filepath.Join(dir, "absent"), "no such file"},
		{"WorldReadable", write("world", token+"\n", 0o644), "readable or writable by every user (mode 0644)"},
		{"WorldWritable", write("worldw", token+"\n", 0o602), "mode 0602"},
		{"Empty", write("empty", " \n", 0o600), "is empty"},
		{"TwoWords", write("words", token+" "+token+"\n", 0o600), "one word of printable ASCII"},
		{"TooLong", write("long", strings.Repeat("x", 5000), 0o600), "over 4096 bytes"},
		{"Directory", dir, "regular file"},
		{"Relative", "token", "absolute path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(minimal + "health: {metrics_token_file: " + tc.path + "}\n"))
			if tc.says == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.Health.MetricsTokenFile != tc.path {
					t.Errorf("metrics_token_file = %q", c.Health.MetricsTokenFile)
				}
				if got, err := ReadTokenFile(tc.path); err != nil || got != token {
					t.Errorf("ReadTokenFile: %v (token read back: %t)", err, got == token)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "health.metrics_token_file" || fe.Line != 6 || fe.ExitCode() != 2 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want a health.metrics_token_file (line 6) error", err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
	if c, err := Parse([]byte(minimal)); err != nil || c.Health.MetricsTokenFile != "" {
		t.Errorf("default: %q, %v; want no token file", c.Health.MetricsTokenFile, err)
	}
}
