package main

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	goodPW    = "Correct-Horse-Battery-9"
	goodEmail = "ops@example.com"
)

func TestParseArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want invocation
		err  bool
	}{
		{"Version", []string{"--version"}, invocation{version: true}, false},
		{"VersionShort", []string{"-v"}, invocation{version: true}, false},
		{"Local1x", []string{"local", "n", "-p", "/run/p", "-a", "/run/a"},
			invocation{gen: gen1, passwordFile: "/run/p", apiFile: "/run/a"}, false},
		{"LocalLongFlags", []string{"local", "node", "--password=/p", "--api", "/a"},
			invocation{gen: gen1, passwordFile: "/p", apiFile: "/a"}, false},
		{"Node2x", []string{"node", "-config", "/c.toml", "-secrets", "/s.toml", "start", "-p", "/p", "-a", "/a"},
			invocation{gen: gen2, configFiles: []string{"/c.toml"}, secretsFiles: []string{"/s.toml"}, passwordFile: "/p", apiFile: "/a"}, false},
		{"Node2xRepeatedConfig", []string{"node", "-c", "/1.toml", "--config", "/2.toml", "-s", "/s.toml", "start", "-a", "/a"},
			invocation{gen: gen2, configFiles: []string{"/1.toml", "/2.toml"}, secretsFiles: []string{"/s.toml"}, apiFile: "/a"}, false},
		{"Node2xValidate", []string{"node", "-config", "/c.toml", "-secrets", "/s.toml", "validate"},
			invocation{validate: true, gen: gen2, configFiles: []string{"/c.toml"}, secretsFiles: []string{"/s.toml"}}, false},
		{"ValidateWithStartFlags", []string{"node", "-config", "/c.toml", "validate", "-p", "/p"}, invocation{}, true},
		{"NoArgs", nil, invocation{}, true},
		{"UnknownCommand", []string{"admin", "login"}, invocation{}, true},
		{"NodeWithoutStart", []string{"node", "-config", "/c.toml"}, invocation{}, true},
		{"LocalWithoutN", []string{"local", "-p", "/p"}, invocation{}, true},
		{"UnknownFlag", []string{"local", "n", "-x", "1"}, invocation{}, true},
		{"TrailingArgument", []string{"node", "start", "-a", "/a", "extra"}, invocation{}, true},
		{"VersionWithArgs", []string{"-v", "x"}, invocation{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseArgs(tt.args)
			if tt.err {
				if !errors.Is(err, errUsage) {
					t.Fatalf("parseArgs(%q) = %+v, %v; want a usage error", tt.args, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			if !equalInvocation(got, tt.want) {
				t.Errorf("parseArgs(%q) = %+v; want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func equalInvocation(a, b invocation) bool {
	return a.version == b.version && a.validate == b.validate && a.gen == b.gen && a.passwordFile == b.passwordFile && a.apiFile == b.apiFile &&
		strings.Join(a.configFiles, "|") == strings.Join(b.configFiles, "|") &&
		strings.Join(a.secretsFiles, "|") == strings.Join(b.secretsFiles, "|")
}

func TestCheckPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		pw    string
		email string
		want  error
	}{
		{"Sixteen", strings.Repeat("a", 16), "", nil},
		{"Fifty", strings.Repeat("a", 50), "", nil},
		{"Fifteen", strings.Repeat("a", 15), "", errTooShort},
		{"FiftyOne", strings.Repeat("a", 51), "", errTooLong},
		{"LeadingSpace", " " + goodPW, "", errWhitespace},
		{"TrailingTab", goodPW + "\t", "", errWhitespace},
		{"ContainsEmail", "x" + goodEmail + "x", goodEmail, errContainsEmail},
		{"ContainsEmailOtherCase", "x" + strings.ToUpper(goodEmail) + "x", goodEmail, errContainsEmail},
		{"SpecialCharacters", `p@ss:w/rd?#%-0123456`, goodEmail, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkPassword(tt.pw, tt.email); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("checkPassword = %v; want %v", err, tt.want)
			}
		})
	}
}

func TestReadKeystorePassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content *string // nil: no file
		want    error
	}{
		{"Valid", ptr(goodPW), nil},
		{"ValidWithTrailingNewline", ptr(goodPW + "\n"), nil},
		{"TwoTrailingNewlines", ptr(goodPW + "\n\n"), errWhitespace},
		{"CRLF", ptr(goodPW + "\r\n"), errWhitespace},
		{"Empty", ptr(""), errMalformed},
		// Strength is judged only when the key ring is empty (unlockKeyRing), and there is no maximum.
		{"ShortIsNotJudgedHere", ptr("pw-7x\n"), nil},
		{"NoMaximum", ptr(strings.Repeat("x", 51)), nil},
		{"LeadingSpace", ptr(" " + goodPW), errWhitespace},
		{"Missing", nil, errMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".password")
			if tt.content != nil {
				writeFile(t, path, *tt.content)
			}
			got, err := readKeystorePassword(path)
			checkErr(t, err, tt.want, path)
			if want := strings.TrimSuffix(deref(tt.content), "\n"); tt.want == nil && got != want {
				t.Errorf("password = %q; want %q", got, want)
			}
			if tt.content != nil && len(*tt.content) > 0 && err != nil && strings.Contains(err.Error(), strings.TrimSpace(*tt.content)) {
				t.Errorf("error %q quotes the password", err)
			}
		})
	}
}

func TestReadKeystorePasswordUnreadable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		// root reads any file: check the directory case instead, which fails the same way for everyone.
		_, err := readKeystorePassword(t.TempDir())
		checkErr(t, err, errUnreadable, "")
		return
	}
	path := filepath.Join(t.TempDir(), ".password")
	writeFile(t, path, goodPW)
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := readKeystorePassword(path)
	checkErr(t, err, errUnreadable, path)
}

func TestReadAPICredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		want    error
		key     string
	}{
		{"Valid", goodEmail + "\n" + goodPW + "\n", nil, ""},
		{"LinesTrimmed", "  " + goodEmail + " \r\n\t" + goodPW + "  \n", nil, ""},
		{"NoTrailingNewline", goodEmail + "\n" + goodPW, nil, ""},
		{"OneLine", goodEmail, errMalformed, ""},
		{"EmptyEmail", "\n" + goodPW + "\n", errMalformed, "line 1"},
		{"NotAnEmail", "operator\n" + goodPW + "\n", errMalformed, "line 1"},
		{"EmptyPassword", goodEmail + "\n\n", errMalformed, "line 2"},
		// The password's rules apply when .api creates the first user (users.seed), not when it is read.
		{"ShortPasswordIsNotJudgedHere", goodEmail + "\nshort\n", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".api")
			writeFile(t, path, tt.content)
			got, err := readAPICredentials(path)
			checkErr(t, err, tt.want, path)
			if tt.want != nil {
				var ie *inputError
				if errors.As(err, &ie) && ie.Key != tt.key {
					t.Errorf("error key = %q; want %q", ie.Key, tt.key)
				}
				return
			}
			if _, pw, _ := strings.Cut(strings.TrimSpace(tt.content), "\n"); got.Email != goodEmail || got.Password != strings.TrimSpace(pw) {
				t.Errorf("credentials = %q/%q; want %q/%q", got.Email, got.Password, goodEmail, strings.TrimSpace(pw))
			}
		})
	}
	t.Run("Missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), ".api")
		_, err := readAPICredentials(path)
		checkErr(t, err, errMissing, path)
	})
	t.Run("FlagNotGiven", func(t *testing.T) {
		_, err := readAPICredentials("")
		checkErr(t, err, errMissing, "")
	})
}

func TestCheckDatabaseURL(t *testing.T) {
	t.Parallel()
	hard := `p@ss:w/rd?#%-0123456`
	encoded := (&url.URL{Scheme: "postgres", User: url.UserPassword("cl@node", hard), Host: "db:5432", Path: "/chainlink",
		RawQuery: "sslmode=require"}).String()
	tests := []struct {
		name        string
		raw         string
		allowSimple bool
		want        error
		secret      string
	}{
		{"EncodedSpecialCharacters", encoded, false, nil, hard},
		{"PostgresqlScheme", "postgresql://u:" + goodPW + "@db/x", false, nil, ""},
		{"PasswordInQuery", "postgres://u@db/x?password=" + url.QueryEscape(goodPW), false, nil, ""},
		{"Empty", "", false, errMissing, ""},
		{"UnencodedHashTruncates", "postgres://u:abc#defghijklmnopqrs@db/x", false, errMalformed, "defghijklmnopqrs"},
		{"BadEscape", "postgres://u:abc%zzdefghijklmnop@db/x", false, errMalformed, "abc%zzdefghijklmnop"},
		{"WrongScheme", "mysql://u:" + goodPW + "@db/x", false, errMalformed, goodPW},
		{"NoHost", "postgres:///x", false, errMalformed, ""},
		{"NoUser", "postgres://db/x", false, errInvalid, ""},
		{"NoPassword", "postgres://u@db/x", false, errInvalid, ""},
		{"ShortPassword", "postgres://u:pw-7x@db/x", false, errTooShort, "pw-7x"},
		{"ShortPasswordAllowed", "postgres://u:short@db/x", true, nil, ""},
		{"ShortPasswordTestDatabase", "postgres://u:short@db/chainlink_test", false, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkDatabaseURL("secrets.toml", "Database.URL", tt.raw, tt.allowSimple)
			checkErr(t, err, tt.want, "secrets.toml")
			if err != nil && tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error %q quotes the password", err)
			}
			if tt.name == "EncodedSpecialCharacters" && (got.User != "cl@node" || got.Host != "db:5432" || got.Database != "chainlink") {
				t.Errorf("target = %+v", got)
			}
		})
	}
}

func TestLoadEnvConfig(t *testing.T) {
	t.Parallel()
	dbURL := "postgres://cl:" + goodPW + "@db:5432/chainlink?sslmode=require"
	tests := []struct {
		name  string
		env   map[string]string
		want  error
		check func(*testing.T, nodeConfig)
	}{
		{"Defaults", map[string]string{"DATABASE_URL": dbURL}, nil, func(t *testing.T, c nodeConfig) {
			if c.HTTPPort != 6688 || c.LockMode != lockDual || c.LeaseDuration != 10*time.Second ||
				c.LeaseRefresh != time.Second || c.AdvisoryID != 1027321974924625846 || !c.JSONConsole {
				t.Errorf("config = %+v", c)
			}
		}},
		{"Everything", map[string]string{"DATABASE_URL": dbURL, "ROOT": "/chainlink", "CHAINLINK_PORT": "7000",
			"DATABASE_LOCKING_MODE": "lease", "LEASE_LOCK_DURATION": "4s", "LEASE_LOCK_REFRESH_INTERVAL": "2s",
			"JSON_CONSOLE": "false", "LOG_LEVEL": "debug", "ETH_CHAIN_ID": "5"}, nil, func(t *testing.T, c nodeConfig) {
			if c.RootDir != "/chainlink" || c.HTTPPort != 7000 || c.LockMode != lockLease || c.LeaseDuration != 4*time.Second ||
				c.LeaseRefresh != 2*time.Second || c.JSONConsole || c.LogLevel.String() != "debug" || c.ChainID != "5" {
				t.Errorf("config = %+v", c)
			}
		}},
		{"NoDatabaseURL", map[string]string{}, errMissing, nil},
		{"BadLockingMode", map[string]string{"DATABASE_URL": dbURL, "DATABASE_LOCKING_MODE": "both"}, errInvalid, nil},
		{"BadPort", map[string]string{"DATABASE_URL": dbURL, "CHAINLINK_PORT": "http"}, errInvalid, nil},
		{"RefreshOverHalf", map[string]string{"DATABASE_URL": dbURL, "LEASE_LOCK_DURATION": "3s", "LEASE_LOCK_REFRESH_INTERVAL": "2s"}, errInvalid, nil},
		{"BadLogLevel", map[string]string{"DATABASE_URL": dbURL, "LOG_LEVEL": "loud"}, errInvalid, nil},
		{"WeakDatabasePassword", map[string]string{"DATABASE_URL": "postgres://cl:pw@db/chainlink"}, errTooShort, nil},
		{"WeakDatabasePasswordSkipped", map[string]string{"DATABASE_URL": "postgres://cl:pw@db/chainlink",
			"SKIP_DATABASE_PASSWORD_COMPLEXITY_CHECK": "true"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadEnvConfig(mapEnv(tt.env))
			checkErr(t, err, tt.want, envSource)
			if err == nil && tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLoadTOMLConfig(t *testing.T) {
	t.Parallel()
	secretDB := "postgres://cl:" + url.PathEscape("s3cret-p@ss:/?#%-xyz") + "@db:5432/chainlink"
	goodSecrets := "[Database]\nURL = '" + secretDB + "'\n[Password]\nKeystore = '" + goodPW + "'\n"
	goodConfig := "RootDir = '/chainlink'\n[Log]\nLevel = 'warn'\nJSONConsole = true\n[WebServer]\nHTTPPort = 6690\n" +
		"[Database.Lock]\nEnabled = true\nLeaseDuration = '4s'\nLeaseRefreshInterval = '1s'\n[[EVM]]\nChainID = '11155111'\n"
	tests := []struct {
		name    string
		config  string
		secrets string
		env     map[string]string
		want    error
		where   string // "config", "secrets" or "environment": the source the error must name
		check   func(*testing.T, nodeConfig)
	}{
		{"Valid", goodConfig, goodSecrets, nil, nil, "", func(t *testing.T, c nodeConfig) {
			if c.RootDir != "/chainlink" || c.HTTPPort != 6690 || c.LockMode != lockLease || c.LeaseDuration != 4*time.Second ||
				c.LeaseRefresh != time.Second || c.ChainID != "11155111" || c.LogLevel.String() != "warn" ||
				c.DatabaseURL != secretDB || c.Keystore != goodPW || c.DB.User != "cl" {
				t.Errorf("config = %+v", c)
			}
		}},
		{"Defaults", "", goodSecrets, nil, nil, "", func(t *testing.T, c nodeConfig) {
			if c.HTTPPort != 6688 || c.LockMode != lockLease || c.LeaseDuration != 10*time.Second || c.LeaseRefresh != time.Second {
				t.Errorf("config = %+v", c)
			}
		}},
		{"LockDisabled", "[Database.Lock]\nEnabled = false\n", goodSecrets, nil, nil, "", func(t *testing.T, c nodeConfig) {
			if c.LockMode != lockNone {
				t.Errorf("lock mode = %s", c.LockMode)
			}
		}},
		{"UnknownKeysTolerated", goodConfig + "[Feature]\nLogPoller = true\n[OCR2]\nEnabled = true\n", goodSecrets, nil, nil, "", nil},
		{"IntegerChainID", "[[EVM]]\nChainID = 137\n", goodSecrets, nil, nil, "", func(t *testing.T, c nodeConfig) {
			if c.ChainID != "137" {
				t.Errorf("chain id = %s", c.ChainID)
			}
		}},
		{"EnvDatabaseURLWins", "", "[Password]\nKeystore = '" + goodPW + "'\n",
			map[string]string{"CL_DATABASE_URL": secretDB}, nil, "", func(t *testing.T, c nodeConfig) {
				if c.DatabaseURL != secretDB {
					t.Errorf("database URL not taken from CL_DATABASE_URL")
				}
			}},
		{"ConfigNotTOML", "RootDir = '/x' 'y'\n", goodSecrets, nil, errMalformed, "config", nil},
		{"PortWrongType", "[WebServer]\nHTTPPort = '6688'\n", goodSecrets, nil, errWrongType, "config", nil},
		{"LockEnabledWrongType", "[Database.Lock]\nEnabled = 'yes'\n", goodSecrets, nil, errWrongType, "config", nil},
		{"PortOutOfRange", "[WebServer]\nHTTPPort = 70000\n", goodSecrets, nil, errInvalid, "config", nil},
		{"BadDuration", "[Database.Lock]\nLeaseDuration = 'ten'\n", goodSecrets, nil, errInvalid, "config", nil},
		{"RefreshOverHalf", "[Database.Lock]\nLeaseDuration = '3s'\nLeaseRefreshInterval = '2s'\n", goodSecrets, nil, errInvalid, "config", nil},
		{"BadLogLevel", "[Log]\nLevel = 'loud'\n", goodSecrets, nil, errInvalid, "config", nil},
		{"SecretsNotTOML", "", "[Database]\nURL = '" + secretDB + "\n", nil, errMalformed, "secrets", nil},
		{"SecretsURLWrongType", "", "[Database]\nURL = 5\n[Password]\nKeystore = '" + goodPW + "'\n", nil, errWrongType, "secrets", nil},
		{"NoDatabaseURL", "", "[Password]\nKeystore = '" + goodPW + "'\n", nil, errMissing, "secrets", nil},
		{"NoKeystore", "", "[Database]\nURL = '" + secretDB + "'\n", nil, errMissing, "secrets", nil},
		{"KeystoreEdgeWhiteSpace", "", "[Database]\nURL = '" + secretDB + "'\n[Password]\nKeystore = ' " + goodPW + "'\n", nil, errWhitespace, "secrets", nil},
		{"UnencodedDatabasePassword", "", "[Database]\nURL = 'postgres://cl:abc#defghijklmnopqr@db/x'\n[Password]\nKeystore = '" + goodPW + "'\n",
			nil, errMalformed, "secrets", nil},
		{"LegacyDatabaseURL", "", goodSecrets, map[string]string{"DATABASE_URL": secretDB}, errInvalid, "environment", nil},
		{"LegacyDatabaseURLEqual", "", goodSecrets, map[string]string{"DATABASE_URL": secretDB, "CL_DATABASE_URL": secretDB}, nil, "", nil},
		{"LegacyRoot", "", goodSecrets, map[string]string{"ROOT": "/chainlink"}, errInvalid, "environment", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			inv := invocation{gen: gen2, configFiles: []string{filepath.Join(dir, "config.toml")},
				secretsFiles: []string{filepath.Join(dir, "secrets.toml")}}
			writeFile(t, inv.configFiles[0], tt.config)
			writeFile(t, inv.secretsFiles[0], tt.secrets)
			c, err := loadTOMLConfig(inv, mapEnv(tt.env))
			source := map[string]string{"config": inv.configFiles[0], "secrets": inv.secretsFiles[0], "environment": envSource}[tt.where]
			checkErr(t, err, tt.want, source)
			if err != nil {
				for _, secret := range []string{"s3cret", goodPW, "defghijklmnopqr"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q quotes a secret", err)
					}
				}
			}
			if err == nil && tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLoadTOMLConfigMergesFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, second, secrets := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml"), filepath.Join(dir, "s.toml")
	writeFile(t, first, "RootDir = '/a'\n[WebServer]\nHTTPPort = 7001\n")
	writeFile(t, second, "[WebServer]\nHTTPPort = 7002\n")
	writeFile(t, secrets, "[Database]\nURL = 'postgres://cl:"+goodPW+"@db/x'\n[Password]\nKeystore = '"+goodPW+"'\n")
	c, err := loadTOMLConfig(invocation{gen: gen2, configFiles: []string{first, second}, secretsFiles: []string{secrets}}, mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.RootDir != "/a" || c.HTTPPort != 7002 {
		t.Errorf("merged config = RootDir %q HTTPPort %d; want /a 7002", c.RootDir, c.HTTPPort)
	}
}

func TestPrepareRootDir(t *testing.T) {
	t.Parallel()
	t.Run("Missing", func(t *testing.T) {
		checkErr(t, prepareRootDir(filepath.Join(t.TempDir(), "nope")), errMissing, "RootDir")
	})
	t.Run("File", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file")
		writeFile(t, path, "")
		checkErr(t, prepareRootDir(path), errInvalid, "RootDir")
	})
	t.Run("NarrowsPermissionsAndLeavesNoProbe", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := prepareRootDir(dir); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("RootDir mode = %o; want 700", st.Mode().Perm())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("probe left behind: %v", entries)
		}
	})
}

func TestReadFaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, err := readFaults(dir)
	if err != nil || f.Crash || f.Unready || f.ExitAfter != 0 {
		t.Fatalf("no files: %+v, %v", f, err)
	}
	writeFile(t, filepath.Join(dir, faultCrash), "")
	writeFile(t, filepath.Join(dir, faultUnready), "")
	writeFile(t, filepath.Join(dir, faultExitAfter), "1500ms\n")
	if f, err = readFaults(dir); err != nil || !f.Crash || !f.Unready || f.ExitAfter != 1500*time.Millisecond {
		t.Errorf("all files: %+v, %v", f, err)
	}
	writeFile(t, filepath.Join(dir, faultExitAfter), "soon")
	if _, err := readFaults(dir); !errors.Is(err, errInvalid) {
		t.Errorf("bad exit-after: %v; want errInvalid", err)
	}
}

func checkErr(t *testing.T, err, want error, source string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error = %v; want %v", err, want)
	}
	var ie *inputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v is not an *inputError", err)
	}
	if source != "" && !strings.Contains(ie.Source, source) {
		t.Errorf("error names %q; want %q", ie.Source, source)
	}
}

func mapEnv(m map[string]string) lookupEnv {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
