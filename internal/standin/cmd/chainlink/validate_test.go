package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidate: `node … validate` passes what start would accept and refuses what it would refuse, exit 1 with
// "Invalid configuration:" naming the file and the key, and never quoting a secret; it starts nothing (no
// RootDir is prepared: the directory named in config.toml does not exist). The stand-in models a part of the
// node's schema and ignores the keys it does not model, so the real node's refusal of an unknown key is tested on
// the real node (test/realnode), not here.
func TestValidate(t *testing.T) {
	t.Parallel()
	dbSecret := "Db-Secret-Value-0123456789"
	secrets := "[Database]\nURL = 'postgres://u:" + dbSecret + "@db/x'\n[Password]\nKeystore = '" + goodPW + "'\n"
	for _, tt := range []struct {
		name, config, secrets string
		code                  int
		says                  []string
	}{
		{"Accepted", "RootDir = '/does/not/exist'\n", secrets, 0, []string{"Valid configuration."}},
		{"ShortDatabasePassword", "", "[Database]\nURL = 'postgres://u:Sh0rtPw@db/x'\n[Password]\nKeystore = '" + goodPW + "'\n", 1,
			[]string{"Invalid configuration:", "secrets.toml", "Database.URL"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "config.toml"), tt.config)
			writeFile(t, filepath.Join(dir, "secrets.toml"), tt.secrets)
			var stdout, stderr bytes.Buffer
			args := []string{"node", "-config", filepath.Join(dir, "config.toml"), "-secrets", filepath.Join(dir, "secrets.toml"), "validate"}
			err := run(context.Background(), args, mapEnv(nil), &stdout, &stderr)
			if exitCode(err) != tt.code {
				t.Fatalf("exit %d (%v); want %d\n%s", exitCode(err), err, tt.code, stdout.String())
			}
			for _, s := range tt.says {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("output %q does not say %q", stdout.String(), s)
				}
			}
			for _, secret := range []string{dbSecret, goodPW, "Sh0rtPw"} {
				if strings.Contains(stdout.String()+stderr.String(), secret) {
					t.Errorf("output quotes a secret: %s", stdout.String())
				}
			}
		})
	}
}
