package config

import (
	"errors"
	"strings"
	"testing"
)

// TestExtraTOMLRules: extra_toml adds keys and tables; it never changes or replaces what the agent writes or relies
// on, holds a secret, or gives an address out of EIP-55 case. Each refusal names the key and the rule.
func TestExtraTOMLRules(t *testing.T) {
	cases := []struct {
		name, toml string
		sentinel   error  // nil: accepted
		key        string // named in the error
	}{
		{"AddsTable", "[Feature]\nLogPoller = true", nil, ""},
		{"AddsKeyToAgentTable", "[WebServer]\nAllowOrigins = 'http://localhost:6688'", nil, ""},
		{"SetsLogLevel", "[Log]\nLevel = 'debug'", nil, ""},
		{"AddsKeyToAgentChain", "[[EVM]]\nMinContractPayment = '0.1 link'", nil, ""},
		{"AddsKeyToAgentChainClient", "[[EVM]]\n[[EVM.Nodes]]\nOrder = 1", nil, ""},
		{"AddsSecondChainClient", "[[EVM]]\n[[EVM.Nodes]]\n[[EVM.Nodes]]\nName = 'backup'\nWSURL = 'wss://b'\nHTTPURL = 'https://b'", nil, ""},
		{"AddsSecondChain", "[[EVM]]\n[[EVM]]\nChainID = '137'\nLinkContractAddress = '0xb0897686c545045aFc77CF20eC7A532E3120E0F1'", nil, ""},
		{"AddsDatabaseSetting", "[Database]\nMaxOpenConns = 20", nil, ""},
		{"KeepsLeaseOn", "[Database.Lock]\nEnabled = true", nil, ""},
		{"ShortensLease", "[Database.Lock]\nLeaseDuration = '4s'\nLeaseRefreshInterval = '1s'", nil, ""},
		{"LengthensLease", "[Database.Lock]\nLeaseDuration = '30s'\nLeaseRefreshInterval = '2s'", nil, ""},
		{"ChecksummedKeySpecific", "[[EVM]]\n[[EVM.KeySpecific]]\nKey = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'", nil, ""},

		{"ReplacesEVMWithString", "EVM = 'x'", ErrAgentOwned, "EVM"},
		{"ReplacesEVMWithTable", "[EVM]\nChainID = '1'", ErrAgentOwned, "EVM"},
		{"ReplacesEVMWithEmptyArray", "EVM = []", ErrAgentOwned, "EVM"},
		{"ReplacesWebServerWithNumber", "WebServer = 5", ErrAgentOwned, "WebServer"},
		{"ReplacesTLSTable", "[WebServer]\nTLS = 5", ErrAgentOwned, "WebServer.TLS"},
		{"ReplacesChainClients", "[[EVM]]\nNodes = 'x'", ErrAgentOwned, "EVM[0].Nodes"},
		{"SetsRootDir", "RootDir = '/data'", ErrAgentOwned, "RootDir"},
		{"SetsHTTPPort", "[WebServer]\nHTTPPort = 8080", ErrAgentOwned, "WebServer.HTTPPort"},
		{"EnablesTLS", "[WebServer.TLS]\nHTTPSPort = 6689", ErrAgentOwned, "WebServer.TLS.HTTPSPort"},
		{"SetsSecureCookies", "[WebServer]\nSecureCookies = true", ErrAgentOwned, "WebServer.SecureCookies"},
		{"SetsJSONConsole", "[Log]\nJSONConsole = false", ErrAgentOwned, "Log.JSONConsole"},
		{"DisablesLease", "[Database.Lock]\nEnabled = false", ErrAgentOwned, "Database.Lock.Enabled"},
		{"ZeroLease", "[Database.Lock]\nLeaseDuration = '0s'\nLeaseRefreshInterval = '0s'", ErrInvalid, "Database.Lock.LeaseDuration"},
		{"LeaseNotADuration", "[Database.Lock]\nLeaseDuration = 10", ErrInvalid, "Database.Lock.LeaseDuration"},
		{"RefreshSlowerThanHalfTheDefaultLease", "[Database.Lock]\nLeaseRefreshInterval = '6s'", ErrInvalid, "Database.Lock.LeaseRefreshInterval"},
		{"ShortLeaseWithDefaultRefresh", "[Database.Lock]\nLeaseDuration = '1s'", ErrInvalid, "half of LeaseDuration (1s)"},
		{"ReplacesLockTable", "[Database]\nLock = false", ErrAgentOwned, "Database.Lock"},
		{"ChangesChainID", "[[EVM]]\nChainID = '5'", ErrAgentOwned, "EVM[0].ChainID"},
		{"ChangesLinkContract", "[[EVM]]\nLinkContractAddress = '0x779877A7B0D9E8603169DdbD7836e478b4624789'", ErrAgentOwned, "EVM[0].LinkContractAddress"},
		{"ChangesChainClientURL", "[[EVM]]\n[[EVM.Nodes]]\nWSURL = 'wss://other'", ErrAgentOwned, "EVM[0].Nodes[0].WSURL"},
		{"HoldsDatabaseURL", "[Database]\nURL = 'postgres://u:p@h/d'", ErrInvalid, "Database.URL"},
		{"HoldsKeystorePassword", "[Password]\nKeystore = 'x'", ErrInvalid, "Password"},
		{"AllowsSimplePasswords", "[Database]\nAllowSimplePasswords = true", ErrInvalid, "Database.AllowSimplePasswords"},
		{"SecondChainLowerCaseLink", "[[EVM]]\n[[EVM]]\nChainID = '137'\nLinkContractAddress = '0xb0897686c545045afc77cf20ec7a532e3120e0f1'", ErrChecksum, "EVM[1].LinkContractAddress"},
		{"LowerCaseKeySpecific", "[[EVM]]\n[[EVM.KeySpecific]]\nKey = '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed'", ErrChecksum, "EVM[0].KeySpecific[0].Key"},
		{"LowerCaseOperatorFactory", "[[EVM]]\nOperatorFactoryAddress = '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed'", ErrChecksum, "EVM[0].OperatorFactoryAddress"},
		{"LowerCaseTransmitter", "[OCR]\nTransmitterAddress = '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed'", ErrChecksum, "OCR.TransmitterAddress"},
		{"Malformed", "[Log", ErrInvalid, "not valid TOML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yaml := minimal + "  extra_toml: |\n    " + strings.ReplaceAll(tc.toml, "\n", "\n    ") + "\n"
			_, err := Parse([]byte(yaml))
			if tc.sentinel == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.Is(err, tc.sentinel) || !errors.As(err, &fe) || fe.Field != "node.extra_toml" || fe.Line != 6 || fe.ExitCode() != 2 {
				t.Fatalf("got %v, want a node.extra_toml (line 6) error wrapping %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name %s", err, tc.key)
			}
		})
	}
}

func TestExtraTOMLReportsEveryKey(t *testing.T) {
	errs := ExtraTOMLProblems(Node{ExtraTOML: "RootDir = '/x'\n[WebServer]\nHTTPPort = 1\n[WebServer.TLS]\nHTTPSPort = 443\n"})
	if len(errs) != 3 {
		t.Fatalf("%d problems, want 3: %v", len(errs), errs)
	}
	for i, key := range []string{"RootDir", "WebServer.HTTPPort", "WebServer.TLS.HTTPSPort"} {
		if !strings.HasPrefix(errs[i].Error(), key+" is the agent's") {
			t.Errorf("problem %d = %q, want it to start with %s", i, errs[i], key)
		}
	}
}
