package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pelletier/go-toml/v2"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// leafPaths lists the scalar keys of a TOML tree in config.AgentTOMLKeys' notation.
func leafPaths(m map[string]any, prefix string) []string {
	var out []string
	for k, v := range m {
		p := strings.TrimPrefix(prefix+"."+k, ".")
		switch v := v.(type) {
		case map[string]any:
			out = append(out, leafPaths(v, p)...)
		case []any:
			for i, e := range v {
				out = append(out, leafPaths(e.(map[string]any), fmt.Sprintf("%s[%d]", p, i))...)
			}
		default:
			out = append(out, p)
		}
	}
	return out
}

// TestAgentTOMLIsWhatConfigProtects: the renderer writes exactly config.AgentTOMLKeys, so the extra_toml rules
// protect every key the agent writes.
func TestAgentTOMLIsWhatConfigProtects(t *testing.T) {
	written := leafPaths(agentTOML(testConfig(t, "")), "")
	slices.Sort(written)
	var protected []string
	for k := range config.AgentTOMLKeys {
		protected = append(protected, k)
	}
	slices.Sort(protected)
	if !slices.Equal(written, protected) {
		t.Errorf("rendered keys %v\nprotected keys %v", written, protected)
	}
}

// TestExtraTOMLMerge: extra_toml's [[EVM]] merges into the agent's chain element by element, a second element adds
// a chain, and new keys land beside the agent's, which stay as written.
func TestExtraTOMLMerge(t *testing.T) {
	c := testConfig(t, `  extra_toml: |
    [Log]
    Level = 'debug'
    [WebServer]
    AllowOrigins = 'http://localhost:6688'
    [[EVM]]
    MinContractPayment = '0.1 link'
    [[EVM.Nodes]]
    Order = 2
    [[EVM.Nodes]]
    Name = 'backup'
    WSURL = 'wss://backup.example.com'
    HTTPURL = 'https://backup.example.com'
    [[EVM]]
    ChainID = '137'
    LinkContractAddress = '0xb0897686c545045aFc77CF20eC7A532E3120E0F1'
`)
	out, err := configTOML(c)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		RootDir   string
		Log       struct{ Level string }
		WebServer struct {
			HTTPPort      int
			AllowOrigins  string
			SecureCookies bool
			TLS           struct{ HTTPSPort int }
		}
		EVM []struct {
			ChainID, LinkContractAddress, MinContractPayment string
			Nodes                                            []struct {
				Name, WSURL string
				Order       int
			}
		}
	}
	if err := toml.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.RootDir != DataMount || got.Log.Level != "debug" || got.WebServer.HTTPPort != NodePort || got.WebServer.SecureCookies ||
		got.WebServer.TLS.HTTPSPort != 0 || got.WebServer.AllowOrigins != "http://localhost:6688" {
		t.Errorf("top level: %+v", got)
	}
	if len(got.EVM) != 2 || got.EVM[0].ChainID != "11155111" || got.EVM[0].MinContractPayment != "0.1 link" ||
		len(got.EVM[0].Nodes) != 2 || got.EVM[0].Nodes[0].Name != "primary" || got.EVM[0].Nodes[0].WSURL != "wss://sepolia.example.com/ws" ||
		got.EVM[0].Nodes[0].Order != 2 || got.EVM[0].Nodes[1].Name != "backup" || got.EVM[1].ChainID != "137" {
		t.Errorf("EVM: %+v", got.EVM)
	}
}

// TestRenderHoldsExtraTOMLToTheRules: a Config whose extra_toml bypassed Parse is refused by Render all the same.
func TestRenderHoldsExtraTOMLToTheRules(t *testing.T) {
	for name, extra := range map[string]string{
		"ReplacesTLSTable": "[WebServer]\nTLS = 5",
		"EnablesTLS":       "[WebServer.TLS]\nHTTPSPort = 443",
		"DisablesLease":    "[Database.Lock]\nEnabled = false",
		"ReplacesEVM":      "EVM = 'x'",
	} {
		t.Run(name, func(t *testing.T) {
			c := testConfig(t, "")
			c.Node.ExtraTOML = extra
			_, err := Render(c, testID, testSecrets(), FormatTOML)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != "node.extra_toml" || !errors.Is(err, config.ErrAgentOwned) || fe.ExitCode() != 2 {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestMergeNeverReplacesAgentKeys(t *testing.T) {
	base := agentTOML(testConfig(t, ""))
	for name, extra := range map[string]map[string]any{
		"Scalar":       {"RootDir": "/x"},
		"TableByValue": {"WebServer": map[string]any{"TLS": int64(5)}},
		"ArrayByValue": {"EVM": "x"},
		"NestedScalar": {"EVM": []any{map[string]any{"ChainID": "5"}}},
	} {
		if err := mergeTOML(base, extra, ""); err == nil {
			t.Errorf("%s: merged %v over the agent's keys", name, extra)
		}
	}
}

// TestKeystoreEmpty asks a real PostgreSQL the node's question, through the states a node's database goes through.
func TestKeystoreEmpty(t *testing.T) {
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pg.CreateDatabase(ctx, "keyring", "node_user", "node-Password-0123456789"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.URL("keyring"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	c := testConfig(t, "")
	weak := testSecrets()
	weak.KeystorePassword = NewSecret("weak", "v")

	steps := []struct {
		name      string
		sql       string
		wantEmpty bool
	}{
		{"NotMigratedYet", "", true},
		{"MigratedNoKeyRing", "CREATE TABLE encrypted_key_rings (encrypted_keys jsonb, updated_at timestamptz NOT NULL)", true},
		{"KeyRingMade", "INSERT INTO encrypted_key_rings (encrypted_keys, updated_at) VALUES (NULL, NOW())", false},
	}
	for _, st := range steps {
		if st.sql != "" {
			if _, err := conn.Exec(ctx, st.sql); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		empty, err := KeystoreEmpty(ctx, conn)
		if err != nil || empty != st.wantEmpty {
			t.Fatalf("%s: KeystoreEmpty = %t, %v; want %t", st.name, empty, err, st.wantEmpty)
		}
		err = CheckKeystore(ctx, conn, c, weak)
		var se *SecretError
		if st.wantEmpty && (!errors.As(err, &se) || se.Key != "keystore_password" || se.ID != "WalletSecret" || se.ExitCode() != 5 ||
			!strings.Contains(err.Error(), "keystore is empty")) {
			t.Errorf("%s: a weak password for an empty keystore: got %v", st.name, err)
		}
		if !st.wantEmpty && err != nil {
			t.Errorf("%s: a weak password bound to an existing key ring must pass: %v", st.name, err)
		}
		if err := CheckKeystore(ctx, conn, c, testSecrets()); err != nil {
			t.Errorf("%s: a strong password: %v", st.name, err)
		}
	}

	conn.Close(ctx)
	if _, err := KeystoreEmpty(ctx, conn); err == nil || !strings.Contains(err.Error(), "encrypted_key_rings") {
		t.Errorf("a closed session: got %v, want an error naming the table", err)
	}
}

type fakeValidator struct {
	calls int
	got   NodeFiles
	err   error
}

var _ NodeValidator = (*fakeValidator)(nil)

func (f *fakeValidator) ValidateNode(_ context.Context, files NodeFiles) error {
	f.calls++
	f.got = files
	return f.err
}

func TestValidateWithNode(t *testing.T) {
	c := testConfig(t, "")
	c.Node.Database.SSLRootCert = "/etc/cl-agent/ca.pem"
	files := NodeFilesFor(c, FormatTOML, "/run/cl-agent/node")
	wantArgs := []string{"node", "-config", "/run/chainlink/config.toml", "-secrets", "/run/chainlink/secrets.toml", "validate"}
	t.Run("AcceptedFilesPass", func(t *testing.T) {
		v := &fakeValidator{}
		if err := ValidateWithNode(context.Background(), v, files); err != nil || v.calls != 1 {
			t.Fatalf("err %v, %d calls", err, v.calls)
		}
		if !slices.Equal(v.got.Args, wantArgs) || v.got.SecretsDir != "/run/cl-agent/node" || v.got.User != "14933:14933" ||
			!slices.Equal(v.got.ReadOnly, []string{"/etc/cl-agent/ca.pem"}) {
			t.Errorf("validator got %+v", v.got)
		}
	})
	t.Run("RefusalIsAConfigError", func(t *testing.T) {
		reason := errors.New("Invalid configuration: Log.Colour: missing field")
		err := ValidateWithNode(context.Background(), &fakeValidator{err: reason}, files)
		var nr *NodeRefusedError
		if !errors.As(err, &nr) || nr.ExitCode() != 2 || !errors.Is(err, ErrNodeRefused) || !errors.Is(err, reason) || !strings.Contains(err.Error(), "Log.Colour") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("CancelledIsNotARefusal", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := ValidateWithNode(ctx, NodeValidatorFunc(func(ctx context.Context, _ NodeFiles) error { return ctx.Err() }), files)
		var nr *NodeRefusedError
		if err == nil || errors.As(err, &nr) || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("NoValidatorOrEnvFormatChecksNothing", func(t *testing.T) {
		v := &fakeValidator{err: errors.New("refused")}
		if err := ValidateWithNode(context.Background(), nil, files); err != nil {
			t.Errorf("nil validator: %v", err)
		}
		if err := ValidateWithNode(context.Background(), v, NodeFilesFor(c, FormatEnv, "/d")); err != nil || v.calls != 0 {
			t.Errorf("1.x files: %v, %d calls", err, v.calls)
		}
	})
}

// The node's own expressions (chainlink v2.19.0 core/utils/password.go), to hold the agent's byte-wise version to.
var (
	nodeLeadingWhitespace  = regexp.MustCompile(`^\s+`)
	nodeTrailingWhitespace = regexp.MustCompile(`\s+$`)
)

// FuzzPasswordRulesMatchTheNode: for any value, the agent's database and API rules decide as the node's code does
// (VerifyPasswordComplexity; the API's 50-byte limit after the .api line is trimmed), the only extra refusals being
// a NUL in the database password and, for .api, what the file cannot carry unchanged.
func FuzzPasswordRulesMatchTheNode(f *testing.F) {
	for _, seed := range []string{"", "0123456789abcdef", " 0123456789abcdef", "0123456789abcdef\v", "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
		strings.Repeat("x", 50), strings.Repeat("x", 51), "0123456789abcdef\u00a0", "x\x00xxxxxxxxxxxxxxxx"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		nodeOK := !nodeLeadingWhitespace.MatchString(pw) && !nodeTrailingWhitespace.MatchString(pw) && len(pw) >= 16
		if got := CheckDatabasePassword(pw) == nil; got != (nodeOK && !strings.Contains(pw, "\x00")) {
			t.Fatalf("database password %q: agent ok=%t, node ok=%t", pw, got, nodeOK)
		}
		line := strings.TrimSpace(pw) // as the node reads .api
		nodeAPIOK := !nodeLeadingWhitespace.MatchString(line) && !nodeTrailingWhitespace.MatchString(line) && len(line) >= 16 && len(line) <= 50
		carried := line == pw && !strings.Contains(pw, "\n")
		if got := CheckAPIPassword(pw) == nil; got != (nodeAPIOK && carried) {
			t.Fatalf("API password %q: agent ok=%t, node ok=%t, carried unchanged=%t", pw, got, nodeAPIOK, carried)
		}
	})
}
