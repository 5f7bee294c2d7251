package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// The package's integration fixture: one moto, one IMDS mock and one PostgreSQL for every test here.
var fx struct {
	moto *testenv.Moto
	imds *testenv.IMDS
	pg   *testenv.Postgres
	dir  string
}

var testIdentity = testenv.Identity{InstanceID: "i-0123456789abcdef0", Region: "us-east-1", AZ: "us-east-1a", PrivateIP: "10.0.1.10"}

// Secret values of the fixture. The database password holds every character the old scripts broke on.
const (
	dbUser     = "cl@node"
	dbPassword = `db-P@ss:w/rd?#%-0123456789`
	apiPass    = "api-Password-0123456789"
	keystore   = "keystore-Password-0123456789"
	apiEmail   = "ops@example.com"
	dbName     = "chainlink_node"
)

var fixtureSecrets = map[string]string{
	"DBSecret":     `{"username":"cl@node","password":"` + dbPassword + `"}`,
	"ApiSecret":    apiPass,
	"WalletSecret": keystore,
	"ShortSecret":  "too-short",
	"EmailSecret":  "xx-" + apiEmail + "-xx-0123",
	"SpaceSecret":  " keystore-Password-0123456789",
	"PlainDB":      dbPassword,
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := startFixture(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "integration fixture:", err) // a missing service fails the run; it never skips
			return 1
		}
		defer stopFixture()
		return m.Run()
	}())
}

func startFixture(ctx context.Context) (err error) {
	os.Setenv("AWS_ACCESS_KEY_ID", "test")
	os.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	os.Setenv("AWS_EC2_METADATA_DISABLED", "") // the SDK may still use IMDS for other things; our endpoint is explicit
	if fx.dir, err = os.MkdirTemp("", "cl-agent-cmd-"); err != nil {
		return err
	}
	if fx.moto, err = testenv.StartMoto(ctx, filepath.Join(fx.dir, "moto")); err != nil {
		return err
	}
	if fx.imds, err = testenv.StartIMDS(ctx, filepath.Join(fx.dir, "imds"), testIdentity); err != nil {
		return err
	}
	if fx.pg, err = testenv.StartPostgres(ctx, filepath.Join(fx.dir, "pg")); err != nil {
		return err
	}
	if err := fx.pg.CreateDatabase(ctx, dbName, dbUser, dbPassword); err != nil {
		return err
	}
	sm := secretsmanager.New(secretsmanager.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(fx.moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	for name, value := range fixtureSecrets {
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); err != nil {
			return fmt.Errorf("create secret %s: %w", name, err)
		}
	}
	return nil
}

func stopFixture() {
	for _, stop := range []func() error{fx.pg.Stop, fx.imds.Stop, fx.moto.Stop} {
		_ = stop()
	}
	os.RemoveAll(fx.dir)
}

// writeConfig writes a configuration pointing at the fixture, with edits applied, and returns its path.
func writeConfig(t *testing.T, format string, edits ...string) string {
	path, _ := writeConfigCA(t, format, edits...)
	return path
}

// writeConfigCA is writeConfig that also returns the path of the database CA bundle the configuration names (a
// copy readable by the node's uid).
func writeConfigCA(t *testing.T, format string, edits ...string) (path, ca string) {
	t.Helper()
	ca = filepath.Join(t.TempDir(), "ca.pem")
	data, err := os.ReadFile(fx.pg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, data, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"aws: {endpoint_url: " + fx.moto.URL + ", imds_endpoint: " + fx.imds.URL + ", imds_timeout: 5s, call_timeout: 10s}",
		"secrets:",
		"  database_password: {id: DBSecret, json_key: password}",
		"  api_password: {id: ApiSecret}",
		"  keystore_password: {id: WalletSecret}",
		"node:",
		"  format: " + format,
		"  network: Ethereum-Sepolia",
		"  ws_url: wss://sepolia.example.com/ws",
		"  http_url: https://sepolia.example.com",
		"  api_email: " + apiEmail,
		fmt.Sprintf("  database: {host: %s, port: %d, name: %s, user: '%s', sslmode: verify-full, sslrootcert: %s}", fx.pg.BridgeHost, fx.pg.Port, dbName, dbUser, ca),
		"image: {repository: standin-chainlink, tag: 2.10.0}",
		"container: {data_dir: " + filepath.Join(t.TempDir(), "data") + ", secrets_dir: " + filepath.Join(t.TempDir(), "secrets") + "}",
		"state_dir: " + t.TempDir(),
	}
	// An edit replaces the line with the same indentation and key, or is appended.
	key := func(l string) string { k, _, _ := strings.Cut(l, ":"); return k }
	for _, e := range edits {
		i := slices.IndexFunc(lines, func(l string) bool { return key(l) == key(e) })
		if i < 0 {
			lines = append(lines, e)
		} else {
			lines[i] = e
		}
	}
	path = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ca
}

// cli runs the command in-process and returns its exit code and both outputs.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = runMain(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// assertNoSecret fails when any fixture secret value appears, raw or escaped, in text.
func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for name, v := range fixtureSecrets {
		for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if len(form) >= 8 && strings.Contains(text, form) {
				t.Errorf("%s contains secret %s", what, name)
			}
		}
	}
	for _, v := range []string{dbPassword, apiPass, keystore} {
		if strings.Contains(text, v) {
			t.Errorf("%s contains a secret value", what)
		}
	}
}

// forgetPair removes the pair's record (agent/pair) from the fixture's database: the tests of `cl-agent run` share
// that database, and each plays the first host of a new pair (a record left by another test names its registry).
func forgetPair(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fx.pg.URL(dbName))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS cl_agent_pair_image"); err != nil {
		t.Fatal(err)
	}
}
