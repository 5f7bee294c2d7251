package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusedKeyInTheNodesWords: a release that refuses a key ends validate and start alike with exit 1 and, on
// stderr, exactly what the real node v2.19.0 prints for an unknown key there (the golden texts are its output on
// the same files, captured with cl-agent-test/chainlink:2.19.0); a config without the key, or a release that
// refuses nothing, goes on as before; secrets.toml is never searched.
func TestRefusedKeyInTheNodesWords(t *testing.T) {
	t.Parallel()
	secrets := "[Database]\nURL = 'postgres://u:Db-Secret-Value-0123456789@db/x'\n[Password]\nKeystore = '" + goodPW + "'\n"
	const webServer = "RootDir = \"/tmp/cl\"\n[Log]\nLevel = \"info\"\n[WebServer]\nHTTPPort = 6688\nNoSuchKey = true\n\n" +
		"[Feature]\nLogPoller = true\n"
	const nodes = "[[EVM]]\nChainID = \"1\"\n[[EVM.Nodes]]\nName = \"a\"\nWSURL = \"ws://a\"\nHTTPURL = \"http://a\"\nBogus = 1\n" +
		"[[EVM.Nodes]]\nName = \"b\"\nWSURL = \"ws://b\"\nHTTPURL = \"http://b\"\nBogus = 2\n"
	for _, tt := range []struct {
		name, refuse, config, clConfig string
		stderr                         string // "" when not refused
	}{
		{name: "KeyInATable", refuse: "WebServer.NoSuchKey", config: webServer, stderr: `Error running app: failed to decode config TOML: 3| Level = "info"
4| [WebServer]
5| HTTPPort = 6688
6| NoSuchKey = true
 | ~~~~~~~~~ missing field
7|
8| [Feature]
9| LogPoller = true
`},
		{name: "KeyInEveryTableOfAnArray", refuse: "EVM.Nodes.Bogus", config: nodes, stderr: `Error running app: failed to decode config TOML:  4| Name = "a"
 5| WSURL = "ws://a"
 6| HTTPURL = "http://a"
 7| Bogus = 1
  | ~~~~~ missing field
 8| [[EVM.Nodes]]
 9| Name = "b"
10| WSURL = "ws://b"
---
 9| Name = "b"
10| WSURL = "ws://b"
11| HTTPURL = "http://b"
12| Bogus = 2
  | ~~~~~ missing field
`},
		{name: "KeyInCLConfig", refuse: "Feature.LogPoller", config: "[Log]\nLevel = 'info'\n", clConfig: "[Feature]\nLogPoller = true\n",
			stderr: "Error running app: failed to decode config TOML: 1| [Feature]\n2| LogPoller = true\n | ~~~~~~~~~ missing field\n"},
		{name: "KeyAbsent", refuse: "WebServer.SecureCookies", config: webServer},
		{name: "SameNameInAnotherTable", refuse: "Log.HTTPPort", config: webServer},
		{name: "SecretsNotSearched", refuse: "Database.URL", config: webServer},
		{name: "NothingRefused", config: webServer},
	} {
		for _, cmd := range [][]string{{"validate"}, {"start", "-p", "/nonexistent/.password", "-a", "/nonexistent/.api"}} {
			t.Run(tt.name+"/"+cmd[0], func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				writeFile(t, filepath.Join(dir, "config.toml"), tt.config)
				writeFile(t, filepath.Join(dir, "secrets.toml"), secrets)
				env := map[string]string{"CL_STANDIN_REFUSE_KEY": tt.refuse, "CL_CONFIG": tt.clConfig}
				args := append([]string{"node", "-config", filepath.Join(dir, "config.toml"), "-secrets", filepath.Join(dir, "secrets.toml")}, cmd...)
				var stdout, stderr bytes.Buffer
				err := run(context.Background(), args, mapEnv(env), &stdout, &stderr)
				if tt.stderr == "" {
					// Not refused: validate passes (RootDir is not prepared), start goes on to refuse the missing -p.
					if strings.Contains(stderr.String(), "Error running app") {
						t.Fatalf("refused: %s", stderr.String())
					}
					if want := "Valid configuration."; cmd[0] == "validate" && (err != nil || !strings.Contains(stdout.String(), want)) {
						t.Fatalf("validate: %v\n%s", err, stdout.String())
					}
					return
				}
				if exitCode(err) != 1 || stderr.String() != tt.stderr || stdout.Len() != 0 {
					t.Fatalf("exit %d (%v)\nstderr:\n%s\nwant:\n%s\nstdout: %q", exitCode(err), err, stderr.String(), tt.stderr, stdout.String())
				}
			})
		}
	}
}

func TestMigrateTo(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env  map[string]string
		want int64
		err  error
	}{
		{nil, migrationDefault, nil},
		{map[string]string{envMigrateTo: ""}, migrationDefault, nil},
		{map[string]string{envMigrateTo: "20240910"}, 20240910, nil},
		{map[string]string{envMigrateTo: "0"}, 0, errInvalid},
		{map[string]string{envMigrateTo: "-3"}, 0, errInvalid},
		{map[string]string{envMigrateTo: "v2"}, 0, errInvalid},
	} {
		got, err := migrateTo(mapEnv(tt.env))
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("migrateTo(%v) = %d, %v; want %d, %v", tt.env, got, err, tt.want, tt.err)
		}
	}
}
