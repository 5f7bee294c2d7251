package nodefiles

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pelletier/go-toml/v2"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

const (
	testDBPassword  = `p@ss:w/rd?#%&+= 'x"y\z`
	testAPIPassword = "api-Password-0123456789"
	testKeystore    = "keystore-Password-0123456789"
)

func testConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`
node:
  network: Ethereum-Sepolia
  ws_url: wss://sepolia.example.com/ws
  http_url: https://sepolia.example.com
  api_email: ops@example.com
  database: {host: db.internal, name: chain link, user: "cl@user", sslmode: verify-full}
` + extra))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func testSecrets() secrets.NodeSecrets {
	return secrets.NodeSecrets{
		DatabasePassword: secrets.NewSecret(testDBPassword, "v1"),
		APIPassword:      secrets.NewSecret(testAPIPassword, "v1"),
		KeystorePassword: secrets.NewSecret(testKeystore, "v1"),
	}
}

var testID = identity.Identity{InstanceID: "i-0123456789abcdef0", Region: "us-east-1", AZ: "us-east-1a", PrivateIP: "10.0.1.10"}

func file(t *testing.T, r *Rendered, name string) string {
	t.Helper()
	for _, f := range r.Files {
		if f.Name == name {
			return string(f.Data)
		}
	}
	t.Fatalf("no %s among %d files", name, len(r.Files))
	return ""
}

func TestDatabaseURLRoundTrip(t *testing.T) {
	for _, pw := range []string{testDBPassword, "plain-password-1234", "ünïcødé-pässwörd-ß", "%41%42 percent-looking"} {
		db := config.Database{Host: "db.internal", Port: 5432, Name: "chain link", User: "cl@user", SSLMode: "require"}
		raw := DatabaseURL(db, pw, "i-0abc")
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse: %v", err)
		}
		got, _ := u.User.Password()
		if got != pw || u.User.Username() != "cl@user" {
			t.Errorf("url.Parse gives user %q password %q, want %q", u.User.Username(), got, pw)
		}
		pc, err := pgx.ParseConfig(raw)
		if err != nil {
			t.Fatalf("pgx.ParseConfig: %v", err)
		}
		if pc.Password != pw || pc.User != "cl@user" || pc.Database != "chain link" || pc.Host != "db.internal" {
			t.Errorf("pgx parses %q %q %q %q", pc.User, pc.Password, pc.Database, pc.Host)
		}
		if pc.RuntimeParams["application_name"] != "chainlink/i-0abc" {
			t.Errorf("application_name = %q", pc.RuntimeParams["application_name"])
		}
	}
}

func TestRenderTOML(t *testing.T) {
	c := testConfig(t, `  extra_toml: |
    [Log]
    Level = 'debug'
    [[EVM]]
    MinContractPayment = '0.1 link'
    [Feature]
    LogPoller = true
`)
	r, err := Render(c, testID, testSecrets(), FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	if r.Env != nil {
		t.Errorf("2.x must get no environment (it would show in docker inspect), got %v", r.Env)
	}
	wantCmd := []string{"node", "-config", "/run/chainlink/config.toml", "-secrets", "/run/chainlink/secrets.toml", "start", "-p", "/run/chainlink/.password", "-a", "/run/chainlink/.api"}
	if !slices.Equal(r.Cmd, wantCmd) {
		t.Errorf("cmd = %v", r.Cmd)
	}
	var cfg struct {
		RootDir string
		Log     struct {
			Level       string
			JSONConsole bool
		}
		Feature   struct{ LogPoller bool }
		WebServer struct {
			HTTPPort int
			TLS      struct{ HTTPSPort int }
		}
		EVM []struct {
			ChainID, LinkContractAddress, MinContractPayment string
			Nodes                                            []struct{ Name, WSURL, HTTPURL string }
		}
	}
	raw := file(t, r, ConfigFile)
	if err := toml.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("config.toml does not parse: %v\n%s", err, raw)
	}
	if cfg.RootDir != "/chainlink" || !cfg.Log.JSONConsole || cfg.Log.Level != "debug" || !cfg.Feature.LogPoller ||
		cfg.WebServer.HTTPPort != 6688 || cfg.WebServer.TLS.HTTPSPort != 0 {
		t.Errorf("config.toml settings wrong: %+v", cfg)
	}
	if len(cfg.EVM) != 1 || cfg.EVM[0].ChainID != "11155111" || cfg.EVM[0].LinkContractAddress != "0x779877A7B0D9E8603169DdbD7836e478b4624789" ||
		cfg.EVM[0].MinContractPayment != "0.1 link" || len(cfg.EVM[0].Nodes) != 1 || cfg.EVM[0].Nodes[0].WSURL != "wss://sepolia.example.com/ws" {
		t.Errorf("EVM section wrong: %+v", cfg.EVM)
	}
	for _, secret := range testSecrets().Values() {
		if strings.Contains(raw, secret) {
			t.Errorf("config.toml holds a secret")
		}
	}
	var sec struct {
		Database struct{ URL string }
		Password struct{ Keystore string }
	}
	if err := toml.Unmarshal([]byte(file(t, r, SecretsFile)), &sec); err != nil {
		t.Fatal(err)
	}
	pc, err := pgx.ParseConfig(sec.Database.URL)
	if err != nil || pc.Password != testDBPassword {
		t.Errorf("secrets.toml URL does not give the password back: %v", err)
	}
	if sec.Password.Keystore != testKeystore {
		t.Errorf("keystore in secrets.toml differs")
	}
	if got := file(t, r, APIFile); got != "ops@example.com\n"+testAPIPassword+"\n" {
		t.Errorf(".api = %q", got)
	}
	if got := file(t, r, PasswordFile); got != testKeystore {
		t.Errorf(".password differs")
	}
}

func TestRenderEnv(t *testing.T) {
	c := testConfig(t, "  extra_env: {LOG_LEVEL: debug, MIN_INCOMING_CONFIRMATIONS: '3'}\n")
	r, err := Render(c, testID, testSecrets(), FormatEnv)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range r.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	want := map[string]string{"ROOT": "/chainlink", "JSON_CONSOLE": "true", "ETH_CHAIN_ID": "11155111",
		"LINK_CONTRACT_ADDRESS": "0x779877A7B0D9E8603169DdbD7836e478b4624789", "ETH_URL": "wss://sepolia.example.com/ws",
		"ETH_HTTP_URL": "https://sepolia.example.com", "DATABASE_LOCKING_MODE": "lease", "CHAINLINK_PORT": "6688",
		"CHAINLINK_TLS_PORT": "0", "SECURE_COOKIES": "false", "LOG_LEVEL": "debug", "MIN_INCOMING_CONFIRMATIONS": "3"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["ALLOW_ORIGINS"]; ok {
		t.Error("ALLOW_ORIGINS must not be set")
	}
	pc, err := pgx.ParseConfig(env["DATABASE_URL"])
	if err != nil || pc.Password != testDBPassword {
		t.Errorf("DATABASE_URL does not give the password back: %v", err)
	}
	if file(t, r, EnvFile) != strings.Join(r.Env, "\n")+"\n" {
		t.Error(".env differs from the container environment")
	}
	if !slices.Equal(r.Cmd, []string{"local", "n", "-p", "/run/chainlink/.password", "-a", "/run/chainlink/.api"}) {
		t.Errorf("cmd = %v", r.Cmd)
	}
}

func TestDatabaseURLCarriesRootCert(t *testing.T) {
	db := config.Database{Host: "db", Port: 5432, Name: "n", User: "u", SSLMode: "verify-full", SSLRootCert: "/etc/cl-agent/rds-ca.pem"}
	u, err := url.Parse(DatabaseURL(db, "password-0123456789", ""))
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("sslmode") != "verify-full" || q.Get("sslrootcert") != "/etc/cl-agent/rds-ca.pem" || q.Has("application_name") {
		t.Errorf("query = %v", q)
	}
}

func TestRenderTOMLNeedsHTTPURL(t *testing.T) {
	c := testConfig(t, "")
	c.Node.HTTPURL = ""
	_, err := Render(c, testID, testSecrets(), FormatTOML)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "node.http_url" || !errors.Is(err, config.ErrRequired) {
		t.Fatalf("got %v", err)
	}
}

// TestRenderChecksEachSecret: a password that breaks a node rule stops Render with a terminal error (exit 5) naming
// the secret and the rule, never the value; what the node accepts renders.
func TestRenderChecksEachSecret(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(*secrets.NodeSecrets)
		key    string // "" when accepted
		saying string
	}{
		{"APIPasswordContainingEmailAccepted", func(s *secrets.NodeSecrets) { s.APIPassword = secrets.NewSecret("xx-ops@example.com-xx", "v") }, "", ""},
		{"WeakKeystoreAcceptedWithoutKnowingTheKeystore", func(s *secrets.NodeSecrets) { s.KeystorePassword = secrets.NewSecret("weak", "v") }, "", ""},
		{"LongDatabasePasswordAccepted", func(s *secrets.NodeSecrets) { s.DatabasePassword = secrets.NewSecret(strings.Repeat("d", 200), "v") }, "", ""},
		{"ShortDatabasePassword", func(s *secrets.NodeSecrets) { s.DatabasePassword = secrets.NewSecret("short-db-pw", "v") }, "database_password", "shorter than 16 bytes"},
		{"DatabasePasswordEndsInSpace", func(s *secrets.NodeSecrets) { s.DatabasePassword = secrets.NewSecret("database-password-0123 ", "v") }, "database_password", "white space"},
		{"LongAPIPassword", func(s *secrets.NodeSecrets) { s.APIPassword = secrets.NewSecret(strings.Repeat("a", 51), "v") }, "api_password", "longer than 50 bytes"},
		{"KeystoreEndsInNewline", func(s *secrets.NodeSecrets) { s.KeystorePassword = secrets.NewSecret("keystore-Password-0123\n", "v") }, "keystore_password", "white space"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := testSecrets()
			tc.edit(&s)
			_, err := Render(testConfig(t, ""), testID, s, FormatTOML)
			if tc.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *secrets.Error
			if !errors.As(err, &se) || se.Key != tc.key || se.ExitCode() != 5 || !errors.Is(err, secrets.ErrPasswordRule) || !strings.Contains(err.Error(), tc.saying) {
				t.Fatalf("got %v, want a terminal %s error saying %q", err, tc.key, tc.saying)
			}
			for _, v := range s.Values() {
				if strings.Contains(err.Error(), strings.TrimSpace(v)) {
					t.Errorf("the error quotes a password: %v", err)
				}
			}
		})
	}
}

func TestFormatFor(t *testing.T) {
	cases := []struct {
		setting, tag string
		want         Format
		wantErr      bool
	}{
		{"auto", "1.13.3", FormatEnv, false},
		{"auto", "2.10.0", FormatTOML, false},
		{"auto", "3.0.0", FormatTOML, false},
		{"auto", "0.10.14", FormatEnv, false},
		{"env", "2.10.0", FormatEnv, false},
		{"toml", "latest", FormatTOML, false},
		{"auto", "latest", "", true},
	}
	for _, tc := range cases {
		got, err := FormatFor(tc.setting, tc.tag)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("FormatFor(%q, %q) = %q, %v", tc.setting, tc.tag, got, err)
		}
	}
}

func FuzzRender(f *testing.F) {
	f.Add(testDBPassword, "keystore-password-xyz", "api-password-xyz-123", "[Log]\nLevel='debug'", uint8(0))
	f.Add("p", "k", "a", "[[EVM]]\nX=1\n[[EVM.Nodes]]\nY=2", uint8(1))
	f.Fuzz(func(t *testing.T, dbpw, keystore, apipw, extra string, fmtSel uint8) {
		c := testConfig(t, "")
		c.Node.ExtraTOML = extra
		s := secrets.NodeSecrets{DatabasePassword: secrets.NewSecret(dbpw, ""), APIPassword: secrets.NewSecret(apipw, ""), KeystorePassword: secrets.NewSecret(keystore, "")}
		format := FormatTOML
		if fmtSel%2 == 1 {
			format = FormatEnv
		}
		r, err := Render(c, testID, s, format)
		if err != nil {
			return
		}
		if format == FormatTOML {
			var sec struct {
				Database struct{ URL string }
				Password struct{ Keystore string }
			}
			if err := toml.Unmarshal([]byte(file(&testing.T{}, r, SecretsFile)), &sec); err != nil {
				t.Fatalf("secrets.toml does not parse: %v", err)
			}
			if sec.Password.Keystore != keystore {
				t.Fatalf("keystore changed in secrets.toml")
			}
			var any map[string]any
			if err := toml.Unmarshal([]byte(file(&testing.T{}, r, ConfigFile)), &any); err != nil {
				t.Fatalf("config.toml does not parse: %v", err)
			}
			pc, err := pgx.ParseConfig(sec.Database.URL)
			if err != nil || pc.Password != dbpw {
				t.Fatalf("database password does not round-trip: %v", err)
			}
		} else {
			for _, kv := range r.Env {
				if strings.ContainsAny(kv, "\n\x00") {
					t.Fatalf("env entry with a newline")
				}
			}
		}
	})
}
