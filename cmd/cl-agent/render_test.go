package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/jackc/pgx/v5"
	"github.com/pelletier/go-toml/v2"

	"github.com/cl-agent/cl-agent/agent/logging"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

func outDir(t *testing.T) string { return filepath.Join(t.TempDir(), "node") }

func TestRenderWritesTheNodeFiles(t *testing.T) {
	cases := []struct {
		format string
		files  []string
	}{
		{"toml", []string{".api", ".password", "config.toml", "secrets.toml"}},
		{"env", []string{".api", ".env", ".password"}},
	}
	for _, tc := range cases {
		t.Run(tc.format, func(t *testing.T) {
			dir := outDir(t)
			code, stdout, stderr := cli(t, "render", "--config", writeConfig(t, tc.format), "--out", dir, "--print")
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			assertNoSecret(t, "stdout", stdout)
			assertNoSecret(t, "stderr", stderr)
			if !strings.Contains(stdout, "[REDACTED]") {
				t.Errorf("--print shows no masked value:\n%s", stdout)
			}
			fi, err := os.Stat(dir)
			if err != nil || fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid != 14933 {
				t.Fatalf("directory: %v %v", fi.Mode(), err)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
				info, _ := e.Info()
				st := info.Sys().(*syscall.Stat_t)
				if info.Mode().Perm() != 0o400 || st.Uid != 14933 || st.Gid != 14933 {
					t.Errorf("%s: mode %o owner %d:%d, want 0400 14933:14933", e.Name(), info.Mode().Perm(), st.Uid, st.Gid)
				}
			}
			if strings.Join(names, " ") != strings.Join(tc.files, " ") {
				t.Errorf("files %v, want %v", names, tc.files)
			}
			api, _ := os.ReadFile(filepath.Join(dir, ".api"))
			if string(api) != apiEmail+"\n"+apiPass+"\n" {
				t.Errorf(".api is wrong")
			}
		})
	}
}

// TestRenderedDatabaseURLConnects: the password with @:/?#% round-trips through the rendered URL to a real
// PostgreSQL login (scram-sha-256, TLS verified against the test CA).
func TestRenderedDatabaseURLConnects(t *testing.T) {
	dir := outDir(t)
	cfg := writeConfig(t, "toml", fmt.Sprintf("  database: {host: 127.0.0.1, port: %d, name: %s, user: '%s', sslmode: verify-full, sslrootcert: %s}", fx.pg.Port, dbName, dbUser, fx.pg.CAFile))
	if code, _, stderr := cli(t, "render", "--config", cfg, "--out", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "secrets.toml"))
	var sec struct{ Database struct{ URL string } }
	if err := toml.Unmarshal(raw, &sec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, sec.Database.URL)
	if err != nil {
		t.Fatalf("log in with the rendered URL: %v", err)
	}
	defer conn.Close(ctx)
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != dbUser {
		t.Fatalf("current_user %q, %v", user, err)
	}
}

// TestBadInputs: each bad input gives a clear error naming what is wrong, its exit code (agent/exitcode), and no
// file in the output directory.
func TestBadInputs(t *testing.T) {
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"__type":"AccessDeniedException","message":"User: arn:aws:sts::1:assumed-role/node is not authorized to perform: secretsmanager:GetSecretValue"}`)
	}))
	defer denied.Close()
	cases := []struct {
		name  string
		edits []string
		code  int
		says  []string
	}{
		{"MissingSecret", []string{"  api_password: {id: NoSuchSecret}"}, 5, []string{"api_password", "NoSuchSecret", "not found"}},
		{"AccessDenied", []string{"aws: {endpoint_url: " + denied.URL + ", imds_endpoint: " + fx.imds.URL + "}"}, 5, []string{"database_password", "access denied"}},
		{"ShortPassword", []string{"  api_password: {id: ShortSecret}"}, 5, []string{"api_password", "ShortSecret", "shorter than 16 bytes"}},
		{"ShortDatabasePassword", []string{"  database_password: {id: ShortSecret}"}, 5, []string{"database_password", "ShortSecret", "shorter than 16 bytes"}},
		{"APIPasswordOverFiftyBytes", []string{"  api_password: {id: " + secret(t, "API51Bytes", strings.Repeat("\u00e9", 25)+"x") + "}"}, 5, []string{"api_password", "longer than 50 bytes"}},
		{"PasswordLeadingSpace", []string{"  keystore_password: {id: SpaceSecret}"}, 5, []string{"keystore_password", "white space"}},
		{"LinkContractLowerCase", []string{"  network: Ethereum-Sepolia\n  chain_id: 11155111\n  link_contract: '0x779877a7b0d9e8603169ddbd7836e478b4624789'"}, 2,
			[]string{"node.link_contract", "EIP-55", "write 0x779877A7B0D9E8603169DdbD7836e478b4624789"}},
		{"ExtraTOMLEnablesTLS", []string{"  network: Ethereum-Sepolia\n  extra_toml: \"[WebServer.TLS]\\nHTTPSPort = 6689\""}, 2, []string{"node.extra_toml", "WebServer.TLS.HTTPSPort", "is the agent's"}},
		{"ExtraTOMLDisablesLease", []string{"  network: Ethereum-Sepolia\n  extra_toml: \"[Database.Lock]\\nEnabled = false\""}, 2, []string{"node.extra_toml", "Database.Lock.Enabled", "lease"}},
		{"JSONKeyOnPlainSecret", []string{"  database_password: {id: PlainDB, json_key: password}"}, 5, []string{"database_password", "not a JSON object"}},
		{"UnknownConfigKey", []string{"image: {repository: standin-chainlink, tga: 2.10.0}"}, 2, []string{"image.tga", "line 13", "unknown key"}},
		{"UnknownNetwork", []string{"  network: Ethereum-Mainet"}, 2, []string{"node.network", "unknown network", "Ethereum-Sepolia"}},
		{"MalformedURL", []string{"  ws_url: 'wss//no-host'"}, 2, []string{"node.ws_url", "not a well-formed URL"}},
		{"IMDSDown", []string{"aws: {endpoint_url: " + fx.moto.URL + ", imds_endpoint: http://127.0.0.1:9, imds_timeout: 1s}"}, 1, []string{"instance metadata service did not answer within 1s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := outDir(t)
			code, stdout, stderr := cli(t, "render", "--config", writeConfig(t, "toml", tc.edits...), "--out", dir)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			for _, s := range tc.says {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not say %q:\n%s", s, stderr)
				}
			}
			assertNoSecret(t, "stdout", stdout)
			assertNoSecret(t, "stderr", stderr)
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				entries, _ := os.ReadDir(dir)
				if len(entries) > 0 {
					t.Errorf("files left behind: %v", entries)
				}
			}
		})
	}
}

// TestRenderRefusesANonEmptyDirectory: --out names a directory that holds something (as /tmp would): render
// exits 2 saying so, and the directory keeps its files, owner and mode (it used to be chowned to the node and
// made 0700). A plain file is refused alike; an existing empty directory is used.
func TestRenderRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "someone-elses"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for out, says := range map[string]string{dir: `is not empty (it holds "someone-elses")`, plain: "is not a directory"} {
		code, stdout, stderr := cli(t, "render", "--config", writeConfig(t, "toml"), "--out", out)
		if code != 2 {
			t.Errorf("--out %s: exit %d, want 2\n%s\n%s", out, code, stdout, stderr)
		}
		for _, want := range []string{"render --out", out, says, "new or empty directory"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, stderr)
			}
		}
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o755 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the directory changed: %v %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "someone-elses" {
		t.Errorf("the directory holds %v, want only someone-elses", entries)
	}

	empty := t.TempDir()
	if code, stdout, stderr := cli(t, "render", "--config", writeConfig(t, "toml"), "--out", empty); code != 0 {
		t.Fatalf("an empty directory: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestCheck(t *testing.T) {
	// The image check resolves against a real registry holding the stand-in under a release tag.
	repo := pushStandin(t, "2.10.0")
	image := "image: {repository: " + repo + ", tag: 2.10.0}"
	g := testenv.GethT(t) // the chain lines contact a real chain client
	code, stdout, stderr := cli(t, "check", "--config", writeConfig(t, "toml", append([]string{image}, chainEdits(g.HTTPURL, g.WSURL, "1337")...)...))
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"ok    config", "WARN  tmpfs     container.secrets_dir", "ok    docker", "ok    image", "ok    chain-http", "ok    chain-ws", "ok    imds      i-0123456789abcdef0 us-east-1 us-east-1a 10.0.1.10", "ok    secrets", "ok    database  PostgreSQL 15"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = cli(t, "check", "--config", writeConfig(t, "toml", image, "  api_password: {id: ShortSecret}"))
	if code != 5 || !strings.Contains(stdout, "FAIL  secrets") || !strings.Contains(stdout, "skip  database") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
	if strings.Contains(stdout, "docker inspect") {
		t.Errorf("a 2.x check warns about the 1.x environment:\n%s", stdout)
	}
	// 1.x: the database URL is in the container's environment, and check says so.
	_, stdout, _ = cli(t, "check", "--config", writeConfig(t, "env", image, "  api_password: {id: ShortSecret}"))
	if !strings.Contains(stdout, "note  format    1.x .env format") || !strings.Contains(stdout, "docker inspect chainlink") {
		t.Errorf("no note about the 1.x environment:\n%s", stdout)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"render"}, {"render", "--out"}, {"version", "extra"}} {
		if code, _, _ := cli(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	code, stdout, _ := cli(t, "--help")
	for _, c := range []string{"run", "render", "resolve-image", "check", "fence", "status", "restart", "stepdown", "version"} {
		if code != 0 || !strings.Contains(stdout, "\n  "+c+" ") {
			t.Errorf("--help does not list %s", c)
		}
	}
}

// TestStandinNodeStartsOnRenderedFiles runs the stand-in node image on the rendered 2.x files exactly as the
// daemon mounts them, and waits for /readyz 200.
func TestStandinNodeStartsOnRenderedFiles(t *testing.T) {
	testenv.DockerT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := standin.BuildImage(ctx, "standin-chainlink:2.10.0"); err != nil {
		t.Fatal(err)
	}
	cfg, ca := writeConfigCA(t, "auto")
	secrets := outDir(t)
	if code, _, stderr := cli(t, "render", "--config", cfg, "--out", secrets); code != 0 {
		t.Fatalf("render: exit %d: %s", code, stderr)
	}
	data := t.TempDir()
	if err := os.Chown(data, 14933, 14933); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("cl-agent-cmdtest-%d", time.Now().UnixNano())
	port := testenv.FreePort(t)
	args := []string{"run", "-d", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:6688", port),
		"-v", data + ":/chainlink", "-v", secrets + ":/run/chainlink:ro", "-v", ca + ":" + ca + ":ro",
		"standin-chainlink:2.10.0", "node", "-config", "/run/chainlink/config.toml", "-secrets", "/run/chainlink/secrets.toml",
		"start", "-p", "/run/chainlink/.password", "-a", "/run/chainlink/.api"}
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	var last error
	ready := testenv.Poll(30*time.Second, 100*time.Millisecond, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if last = err; err != nil {
			return false
		}
		resp.Body.Close()
		if last = fmt.Errorf("status %d", resp.StatusCode); resp.StatusCode != http.StatusOK {
			return false
		}
		return true
	})
	if !ready {
		logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
		t.Fatalf("node not ready in 30s (last: %v)\n%s", last, logs)
	}
	logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
	assertNoSecret(t, "node logs", string(logs))
	inspect, _ := exec.Command("docker", "inspect", name).CombinedOutput()
	assertNoSecret(t, "docker inspect", string(inspect))
}

// TestOutputIsRedacted: whatever the process has learned as a secret is masked in both outputs, including the
// final error line (here, a secret typed where a command belongs).
func TestOutputIsRedacted(t *testing.T) {
	logging.Register("leaky-secret-value-42")
	code, stdout, stderr := cli(t, "leaky-secret-value-42")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if strings.Contains(stdout+stderr, "leaky-secret-value-42") || !strings.Contains(stderr, `unknown command "[REDACTED]"`) {
		t.Errorf("the value was not masked:\n%s\n%s", stdout, stderr)
	}
}

// secret creates a Secrets Manager secret in the fixture's moto (once per name) and returns its id.
func secret(t *testing.T, name, value string) string {
	t.Helper()
	sm := secretsmanager.New(secretsmanager.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(fx.moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
	var exists *smtypes.ResourceExistsException
	if err != nil && !errors.As(err, &exists) {
		t.Fatalf("create secret %s: %v", name, err)
	}
	return name
}

// TestRenderAcceptsWhatTheNodeAccepts: values the node takes render (exit 0), where the old rules refused them.
func TestRenderAcceptsWhatTheNodeAccepts(t *testing.T) {
	cases := []struct {
		name string
		edit string
	}{
		{"APIPasswordContainingEmail", "  api_password: {id: EmailSecret}"},
		{"APIPasswordOfFiftyBytes", "  api_password: {id: " + secret(t, "API50Bytes", strings.Repeat("\u00e9", 25)) + "}"},
		{"WeakKeystoreOfAnExistingKeyRing", "  keystore_password: {id: ShortSecret}"},
		{"DatabasePasswordOverFiftyBytes", "  database_password: {id: " + secret(t, "DB60Bytes", strings.Repeat("d", 60)) + "}"},
		{"DatabasePasswordOfMultiByteCharacters", "  database_password: {id: " + secret(t, "DB8Chars16Bytes", strings.Repeat("\u00e9", 8)) + "}"},
		{"ChecksummedLinkContract", "  network: Ethereum-Sepolia\n  chain_id: 11155111\n  link_contract: '0x779877A7B0D9E8603169DdbD7836e478b4624789'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := outDir(t)
			if code, _, stderr := cli(t, "render", "--config", writeConfig(t, "toml", tc.edit), "--out", dir); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "secrets.toml")); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRenderRunsTheNodeValidator: with a validator hooked in, render hands it the written files; a refusal exits 2
// with the node's reason and leaves no file behind.
func TestRenderRunsTheNodeValidator(t *testing.T) {
	var seen []nodefiles.Written
	refuse := errors.New("Invalid configuration: Log.Colour: missing field")
	validate := func(answer error) nodefiles.Validator {
		return nodefiles.ValidatorFunc(func(_ context.Context, f nodefiles.Written) error {
			if _, err := os.Stat(filepath.Join(f.SecretsDir, "config.toml")); err != nil {
				t.Errorf("the validator runs before the files are written: %v", err)
			}
			seen = append(seen, f)
			return answer
		})
	}
	t.Cleanup(func() { renderValidator = nil })

	renderValidator = validate(nil)
	dir := outDir(t)
	if code, _, stderr := cli(t, "render", "--config", writeConfig(t, "toml"), "--out", dir); code != 0 {
		t.Fatalf("accepted: exit %d: %s", code, stderr)
	}
	if len(seen) != 1 || seen[0].SecretsDir != dir || !slices.Equal(seen[0].Args, nodefiles.ValidateArgs()) {
		t.Fatalf("validator saw %+v", seen)
	}

	renderValidator = validate(refuse)
	dir = outDir(t)
	code, _, stderr := cli(t, "render", "--config", writeConfig(t, "toml"), "--out", dir)
	if code != 2 || !strings.Contains(stderr, "Log.Colour") || !strings.Contains(stderr, "the node's own validate refuses") {
		t.Errorf("refused: exit %d: %s", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind after the node refused them: %v", entries)
	}

	seen = nil
	if code, _, stderr := cli(t, "render", "--config", writeConfig(t, "env"), "--out", outDir(t)); code != 0 || len(seen) != 0 {
		t.Errorf("1.x files (no validate in 1.x nodes): exit %d, %d validations: %s", code, len(seen), stderr)
	}
}
