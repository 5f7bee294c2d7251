package nodefiles

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
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
// protect every key the agent writes: each key written for one chain or several, with P2P off or on, is one the
// configuration calls the agent's, and together they are the whole table.
func TestAgentTOMLIsWhatConfigProtects(t *testing.T) {
	index := regexp.MustCompile(`\[\d+\]`)
	covered := map[string]bool{}
	for name, c := range map[string]*config.Config{
		"OneChainP2POff":      testConfig(t, ""),
		"SeveralChainsP2POn":  networkingConfig(t, severalChains, p2pOn),
		"SeveralChainsP2POff": networkingConfig(t, severalChains, ""),
	} {
		for _, path := range leafPaths(agentTOML(c), "") {
			if _, owned := c.Node.AgentTOMLKey(path); !owned {
				t.Errorf("%s: the agent writes %s, which extra_toml may set", name, path)
			}
			covered[index.ReplaceAllString(path, "[]")] = true
		}
	}
	for k := range config.AgentTOMLKeys {
		if !covered[k] {
			t.Errorf("config.AgentTOMLKeys has %s, which the renderer never writes", k)
		}
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

type fakeValidator struct {
	calls int
	got   Written
	err   error
}

var _ Validator = (*fakeValidator)(nil)

func (f *fakeValidator) ValidateNode(_ context.Context, files Written) error {
	f.calls++
	f.got = files
	return f.err
}

func TestValidateWithNode(t *testing.T) {
	c := testConfig(t, "")
	c.Node.Database.SSLRootCert = "/etc/cl-agent/ca.pem"
	files := WrittenFor(c, FormatTOML, "/run/cl-agent/node")
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
		var nr *RefusedError
		if !errors.As(err, &nr) || nr.ExitCode() != 2 || !errors.Is(err, ErrNodeRefused) || !errors.Is(err, reason) || !strings.Contains(err.Error(), "Log.Colour") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("CancelledIsNotARefusal", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := ValidateWithNode(ctx, ValidatorFunc(func(ctx context.Context, _ Written) error { return ctx.Err() }), files)
		var nr *RefusedError
		if err == nil || errors.As(err, &nr) || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("NoValidatorOrEnvFormatChecksNothing", func(t *testing.T) {
		v := &fakeValidator{err: errors.New("refused")}
		if err := ValidateWithNode(context.Background(), nil, files); err != nil {
			t.Errorf("nil validator: %v", err)
		}
		if err := ValidateWithNode(context.Background(), v, WrittenFor(c, FormatEnv, "/d")); err != nil || v.calls != 0 {
			t.Errorf("1.x files: %v, %d calls", err, v.calls)
		}
	})
}

// TestValidateWithNodeNoVerdict: a validator that could not run the node to a verdict (the engine down, its bound
// passed) is worth retrying, not a refusal of the configuration; a refusal it made itself is passed on as it is.
func TestValidateWithNodeNoVerdict(t *testing.T) {
	files := WrittenFor(testConfig(t, ""), FormatTOML, "/run/cl-agent/node")
	engineDown := fmt.Errorf("%w: create container: connection refused", ErrNoVerdict)
	err := ValidateWithNode(context.Background(), &fakeValidator{err: engineDown}, files)
	var nr *RefusedError
	if err == nil || errors.As(err, &nr) || exitcode.Of(err) != exitcode.Retry {
		t.Fatalf("no verdict = %v (exit %d); want a retryable error, not a refusal", err, exitcode.Of(err))
	}
	own := &RefusedError{Err: errors.New("Invalid configuration: Feature.NoSuchKey")}
	err = ValidateWithNode(context.Background(), &fakeValidator{err: own}, files)
	if !errors.As(err, &nr) || nr != own || strings.Count(err.Error(), ErrNodeRefused.Error()) != 1 {
		t.Fatalf("the validator's own refusal came back as %v; want it passed on once", err)
	}
}
