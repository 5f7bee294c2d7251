package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid file: everything else has a default.
const minimal = `
node:
  ws_url: wss://mainnet.example.com
  api_email: ops@example.com
  database: {host: db, name: chainlink, user: chainlink}
`

func TestParseValidFile(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Node.Database.SSLMode != "verify-full" || c.Image.Major != 2 || c.Leader.FenceAfter != 5*time.Second {
		t.Errorf("values not decoded: %+v", c)
	}
	if got, want := c.Leader.PingInterval, time.Second; got != want {
		t.Errorf("default ping_interval = %s, want %s", got, want)
	}
	chain, link := c.Node.Chain()
	if chain != 11155111 || link != "0x779877A7B0D9E8603169DdbD7836e478b4624789" {
		t.Errorf("Ethereum-Sepolia resolved to %d %s", chain, link)
	}
	if c.Container.Log.Options["awslogs-multiline-pattern"] != `^\{` {
		t.Errorf("log options = %v", c.Container.Log.Options)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Default()
	if !reflect.DeepEqual(c.Container, want.Container) || c.Leader != want.Leader || c.Image != want.Image || c.StateDir != want.StateDir {
		t.Errorf("defaults changed: got %+v", c)
	}
	if chain, _ := c.Node.Chain(); chain != 1 {
		t.Errorf("default network chain id = %d, want 1 (Ethereum-Mainnet)", chain)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name     string
		yaml     string
		field    string
		sentinel error
		line     int
	}{
		{"UnknownTopLevelKey", minimal + "stat_dir: /x\n", "stat_dir", ErrUnknownKey, 6},
		{"UnknownNestedKey", "node:\n  database:\n    hostname: db\n", "node.database.hostname", ErrUnknownKey, 3},
		{"DuplicateKey", minimal + "state_dir: /a\nstate_dir: /b\n", "state_dir", ErrInvalid, 7},
		{"UnknownNetwork", minimal + "  network: Ethereum-Mainet\n", "node.network", ErrUnknownNetwork, 6},
		{"RetiredNetwork", minimal + "  network: Ethereum-Rinkeby\n", "node.network", ErrUnknownNetwork, 6},
		{"MalformedWSURL", strings.Replace(minimal, "wss://mainnet.example.com", "'wss//nohost'", 1), "node.ws_url", ErrInvalid, 3},
		{"HTTPSchemeForWS", strings.Replace(minimal, "wss://", "https://", 1), "node.ws_url scheme", ErrInvalid, 0},
		{"MissingWSURL", strings.Replace(minimal, "ws_url: wss://mainnet.example.com", "http_url: https://x", 1), "node.ws_url", ErrRequired, 0},
		{"BadEmail", strings.Replace(minimal, "ops@example.com", "Ops <ops@example.com>", 1), "node.api_email", ErrInvalid, 4},
		{"DatabaseHostWithPath", strings.Replace(minimal, "host: db", "host: db.example.com/chainlink", 1), "node.database.host", ErrInvalid, 0},
		{"DatabaseHostWithQuery", strings.Replace(minimal, "host: db", "host: 'db?sslmode=disable'", 1), "node.database.host", ErrInvalid, 0},
		{"DatabaseHostWithFragment", strings.Replace(minimal, "host: db", "host: 'db#x'", 1), "node.database.host", ErrInvalid, 0},
		{"DatabaseHostWithUser", strings.Replace(minimal, "host: db", "host: admin@db", 1), "node.database.host", ErrInvalid, 0},
		{"DatabaseHostWithSpace", strings.Replace(minimal, "host: db", "host: 'db '", 1), "node.database.host", ErrInvalid, 0},
		{"DatabaseHostWithTab", strings.Replace(minimal, "host: db", "host: \"db\\tx\"", 1), "node.database.host", ErrInvalid, 0},
		{"BadPort", minimal + "container: {host_port: 70000}\n", "container.host_port", ErrOutOfRange, 6},
		{"BadUser", minimal + "container: {user: chainlink}\n", "container.user", ErrInvalid, 6},
		{"SecretsDirOnDataDisk", minimal + "container: {secrets_dir: /var/lib/cl-agent/node/secrets}\n", "container.secrets_dir", ErrInvalid, 6},
		{"RelativeStateDir", minimal + "state_dir: var/lib\n", "state_dir", ErrInvalid, 6},
		{"RelativeDataDir", minimal + "container: {data_dir: node}\n", "container.data_dir", ErrInvalid, 6},
		{"RelativeSocket", minimal + "control: {socket: control.sock}\n", "control.socket", ErrInvalid, 6},
		{"SecretsDirIsRun", minimal + "container: {secrets_dir: /run}\n", "container.secrets_dir", ErrInvalid, 6},
		{"SecretsDirIsTmp", minimal + "container: {secrets_dir: /tmp/}\n", "container.secrets_dir", ErrInvalid, 6},
		{"SecretsDirIsDevShm", minimal + "container: {secrets_dir: /dev/shm}\n", "container.secrets_dir", ErrInvalid, 6},
		{"SecretsDirInDev", minimal + "container: {secrets_dir: /dev/cl-agent}\n", "container.secrets_dir", ErrInvalid, 6},
		{"DataDirIsRoot", minimal + "container: {data_dir: /}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirIsVarLib", minimal + "container: {data_dir: /var/lib/}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirIsVarLibByDots", minimal + "container: {data_dir: /var/lib/cl-agent/..}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirIsHome", minimal + "container: {data_dir: /home}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirIsRootsHome", minimal + "container: {data_dir: /root}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirIsLib64", minimal + "container: {data_dir: /lib64}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirInUsr", minimal + "container: {data_dir: /usr/local/chainlink}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirInEtc", minimal + "container: {data_dir: /etc/chainlink}\n", "container.data_dir", ErrInvalid, 6},
		{"DataDirInProc", minimal + "container: {data_dir: /proc/1}\n", "container.data_dir", ErrInvalid, 6},
		{"StateDirIsVar", minimal + "state_dir: /var\n", "state_dir", ErrInvalid, 6},
		{"StateDirIsVarRun", minimal + "state_dir: /var/run\n", "state_dir", ErrInvalid, 6},
		{"StateDirInSys", minimal + "state_dir: /sys/fs/cl-agent\n", "state_dir", ErrInvalid, 6},
		{"StateDirInBoot", minimal + "state_dir: /boot/cl-agent\n", "state_dir", ErrInvalid, 6},
		{"SocketInEtc", minimal + "control: {socket: /etc/cl-agent/control.sock}\n", "control.socket", ErrInvalid, 6},
		{"SocketIsRun", minimal + "control: {socket: /run}\n", "control.socket", ErrInvalid, 6},
		{"SocketInBin", minimal + "control: {socket: /bin/cl.sock}\n", "control.socket", ErrInvalid, 6},
		{"SocketInSbin", minimal + "control: {socket: /sbin/cl.sock}\n", "control.socket", ErrInvalid, 6},
		{"DataDirInsideSecretsDir", minimal + "container: {data_dir: /run/cl-agent/node/data}\n", "container.data_dir", ErrInvalid, 6},
		{"StateDirInsideSecretsDir", minimal + "state_dir: /run/cl-agent/node/state\n", "state_dir", ErrInvalid, 6},
		{"StateDirIsSecretsDir", minimal + "state_dir: /run/cl-agent/node\n", "state_dir", ErrInvalid, 6},
		{"SocketInsideSecretsDir", minimal + "control: {socket: /run/cl-agent/node/control.sock}\n", "control.socket", ErrInvalid, 6},
		{"SecretsDirIsDataDir", minimal + "container: {secrets_dir: /var/lib/cl-agent/node}\n", "container.secrets_dir", ErrInvalid, 6},
		{"ChainIDWithoutLink", minimal + "  chain_id: 5\n", "node.link_contract", ErrRequired, 0},
		{"LinkContractLowerCase", minimal + "  chain_id: 11155111\n  link_contract: '0x779877a7b0d9e8603169ddbd7836e478b4624789'\n", "node.link_contract", ErrChecksum, 7},
		{"ExtraTOMLSetsRootDir", minimal + "  extra_toml: \"RootDir = '/x'\"\n", "node.extra_toml", ErrAgentOwned, 6},
		{"ExtraTOMLHoldsSecret", minimal + "  extra_toml: \"[Database]\\nURL = 'postgres://u:p@h/d'\"\n", "node.extra_toml", ErrInvalid, 6},
		{"ExtraTOMLMalformed", minimal + "  extra_toml: \"[Log\"\n", "node.extra_toml", ErrInvalid, 6},
		{"ExtraEnvOverridesOwned", minimal + "  extra_env: {DATABASE_URL: x}\n", "node.extra_env.DATABASE_URL", ErrInvalid, 0},
		{"LockKeyIsNodes", minimal + "leader: {lock_key: 1027321974924625846}\n", "leader.lock_key", ErrInvalid, 6},
		{"GuardTooShort", minimal + "leader: {takeover_guard: 10s}\n", "leader", ErrTiming, 0},
		{"FenceTooEager", minimal + "leader: {fence_after: 1s}\n", "leader", ErrTiming, 0},
		{"NegativeDuration", minimal + "leader: {ping_interval: -1s}\n", "leader.ping_interval", ErrOutOfRange, 6},
		{"WrongType", minimal + "container: {host_port: lots}\n", "(file)", ErrInvalid, 6},
		{"NotYAML", "node: [\n", "(file)", ErrSyntax, 0},
		{"BadLogLevel", minimal + "log_level: loud\n", "log_level", ErrInvalid, 6},
		{"AwslogsWithoutGroup", minimal + "container: {log: {group: ''}}\n", "container.log.group", ErrRequired, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("error %v does not wrap %v", err, tc.sentinel)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FieldError", err)
			}
			if fe.Field != tc.field {
				t.Errorf("field = %q, want %q (error: %v)", fe.Field, tc.field, err)
			}
			if tc.line != 0 && fe.Line != tc.line {
				t.Errorf("line = %d, want %d (error: %v)", fe.Line, tc.line, err)
			}
			if fe.ExitCode() != 2 {
				t.Errorf("exit code = %d, want 2", fe.ExitCode())
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name the field", err)
			}
		})
	}
}

// TestDedicatedDirectoriesAccepted: a subdirectory of a system directory is the agent's to use.
func TestDedicatedDirectoriesAccepted(t *testing.T) {
	for _, extra := range []string{
		"container: {secrets_dir: /dev/shm/cl-agent}\n",
		"container: {data_dir: /home/ubuntu/chainlink}\n",
		"container: {data_dir: /var/lib/chainlink, secrets_dir: /run/chainlink}\n",
		"container: {data_dir: /librarian/node}\n" + "state_dir: /tmp/cl-agent\n",
		"control: {socket: /run/cl-agent.sock}\n",
		"control: {socket: /var/run/cl-agent/control.sock}\n",
		"state_dir: /root/cl-agent\n",
	} {
		if _, err := Parse([]byte(minimal + extra)); err != nil {
			t.Errorf("%q refused: %v", extra, err)
		}
	}
}

// TestSystemPathErrorSaysTheRule: the message names the field, the path and what to use instead.
func TestSystemPathErrorSaysTheRule(t *testing.T) {
	_, err := Parse([]byte(minimal + "container: {data_dir: /var/lib}\n"))
	for _, want := range []string{"container.data_dir (line 6)", "must not be a system path", "/var/lib/cl-agent", `"/var/lib"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	_, err = Parse([]byte(minimal + "state_dir: /run/cl-agent/node/state\n"))
	for _, want := range []string{"state_dir (line 6)", "inside container.secrets_dir (/run/cl-agent/node)", "lost at reboot"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

func TestQuickStartNetworkNames(t *testing.T) {
	for name, want := range map[string]uint64{"ETH-Mainnet": 1, "xDai-Mainnet": 100, "Matic-Mainnet": 137, "BSC-Mainnet": 56} {
		c, err := Parse([]byte(minimal + "  network: " + name + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, _ := c.Node.Chain(); got != want {
			t.Errorf("%s: chain id %d, want %d", name, got, want)
		}
	}
	if _, err := Parse([]byte(minimal + "  network: Kovan-ETH-Testnet\n")); !errors.Is(err, ErrUnknownNetwork) {
		t.Errorf("a shut-down testnet must be refused, got %v", err)
	}
}

func TestUnknownKeyMessageListsKnownKeys(t *testing.T) {
	_, err := Parse([]byte("container: {nmae: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "container.nmae (line 1)") || !strings.Contains(err.Error(), "name") {
		t.Fatalf("got %v", err)
	}
}

func TestTimingErrorNamesBothValues(t *testing.T) {
	_, err := Parse([]byte(minimal + "leader: {takeover_guard: 12s}\n"))
	for _, want := range []string{"takeover_guard (12s)", "fence_after (4s)", "container.stop_timeout (10s)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	_, err := Parse([]byte("node: {network: Nowhere}\ncontainer: {host_port: 0}\n"))
	for _, field := range []string{"node.network", "node.ws_url", "node.api_email", "node.database.host", "container.host_port"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("error does not mention %s: %v", field, err)
		}
	}
}

func TestLoadAppliesEnvOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(minimal+"instance: {id: i-0aaa}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CL_AGENT_INSTANCE_ID", "i-0bbb")
	t.Setenv("CL_AGENT_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance.ID != "i-0bbb" || c.AWS.EndpointURL != "http://127.0.0.1:5000" {
		t.Errorf("overrides not applied: %+v %+v", c.Instance, c.AWS)
	}
	t.Setenv("CL_AGENT_IMDS_ENDPOINT", "not a url")
	if _, err := Load(path); !errors.Is(err, ErrInvalid) {
		t.Errorf("a bad override must fail validation, got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "--config" {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("testdata/valid.yaml")
	f.Add(data)
	f.Add([]byte(minimal))
	f.Add([]byte("node: {extra_env: {A: b}}\nleader: {fence_after: 1h}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a FieldError: %T %v", err, err)
			}
			return
		}
		// Anything accepted must satisfy the invariants validation promises.
		if err := CheckTiming(c.Leader, c.Container.StopTimeout); err != nil {
			t.Fatalf("accepted a config that breaks the timing invariant: %v", err)
		}
		if _, _, err := c.Container.UIDGID(); err != nil {
			t.Fatalf("accepted a bad container.user: %v", err)
		}
	})
}

// TestChecksumAddress: the EIP-55 vectors of the EIP itself, whatever case they are given in.
func TestChecksumAddress(t *testing.T) {
	for _, want := range []string{
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
		"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
		"0x52908400098527886E0F7030069857D2E4169EE7", "0xde709f2102306220921060314715629080e2fb77",
	} {
		for _, in := range []string{want, strings.ToLower(want), "0x" + strings.ToUpper(want[2:])} {
			if got, ok := ChecksumAddress(in); !ok || got != want {
				t.Errorf("ChecksumAddress(%s) = %s, %t; want %s", in, got, ok, want)
			}
		}
	}
	for _, bad := range []string{"", "0x", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg"} {
		if _, ok := ChecksumAddress(bad); ok {
			t.Errorf("ChecksumAddress(%q) accepted", bad)
		}
	}
}

// TestBuiltInNetworksAreChecksummed: every LINK address of the table is in EIP-55 case, which the node requires.
func TestBuiltInNetworksAreChecksummed(t *testing.T) {
	for name, n := range Networks {
		if err := CheckAddress(n.LinkContract); err != nil {
			t.Errorf("%s: %s: %v", name, n.LinkContract, err)
		}
	}
}

func TestLinkContractRule(t *testing.T) {
	const good = "0x779877A7B0D9E8603169DdbD7836e478b4624789"
	cases := []struct {
		name, link string
		sentinel   error
		says       []string
	}{
		{"ChecksummedAccepted", good, nil, nil},
		{"AllLowerCaseRefused", strings.ToLower(good), ErrChecksum, []string{"node.link_contract", "EIP-55", "write " + good}},
		{"AllUpperCaseRefused", "0x" + strings.ToUpper(good[2:]), ErrChecksum, []string{"write " + good}},
		{"OneLetterWrongCaseRefused", strings.Replace(good, "Dd", "dd", 1), ErrChecksum, []string{"write " + good}},
		{"UpperCasePrefixRefused", "0X" + good[2:], ErrInvalid, []string{"0x and 40 hex digits"}},
		{"TooShortRefused", good[:41], ErrInvalid, []string{"0x and 40 hex digits"}},
		{"DigitsOnlyAccepted", "0x0000000000000000000000000000000000000001", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal + "  chain_id: 11155111\n  link_contract: '" + tc.link + "'\n"))
			if tc.sentinel == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.Is(err, tc.sentinel) || !errors.As(err, &fe) || fe.Field != "node.link_contract" || fe.ExitCode() != 2 {
				t.Fatalf("got %v, want a node.link_contract error wrapping %v", err, tc.sentinel)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

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
