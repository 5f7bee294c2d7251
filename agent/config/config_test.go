package config

import (
	"errors"
	"os"
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
	if im := c.Image; im.Upgrade != UpgradeAuto || im.PollInterval != 30*time.Minute ||
		im.UpgradeWindow.String() != "22:00-02:00" || im.ReadyTimeout != 15*time.Minute {
		t.Errorf("image upgrade keys not decoded: %+v", im)
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
	if im := c.Image; im.Upgrade != UpgradeManual || im.PollInterval != time.Hour || !im.UpgradeWindow.IsZero() ||
		im.ReadyTimeout != 10*time.Minute {
		t.Errorf("image upgrade defaults: %+v", im)
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

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("testdata/valid.yaml")
	f.Add(data)
	f.Add([]byte(minimal))
	f.Add([]byte("node: {extra_env: {A: b}}\nleader: {fence_after: 1h}"))
	f.Add([]byte(minimal + "image: {upgrade: auto, upgrade_window: 23:59-00:01, poll_interval: 1m, ready_timeout: 5s}\n"))
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
		im := c.Image
		if manual, auto := im.Upgrade == UpgradeManual, im.Upgrade == UpgradeAuto; !manual && !auto ||
			manual && !im.UpgradeWindow.IsZero() || auto && im.Tag != "" ||
			im.PollInterval < time.Minute || im.ReadyTimeout < 5*time.Second {
			t.Fatalf("accepted bad image upgrade keys: %+v", im)
		}
		if w := c.Image.UpgradeWindow; !w.IsZero() {
			if back, err := ParseWindow(w.String()); err != nil || back != w {
				t.Fatalf("accepted window %q does not read back: %v %v", w, back, err)
			}
		}
	})
}
