package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"go.uber.org/zap/zapcore"
)

// lockMode is how the node keeps a second node off its database.
type lockMode string

const (
	lockLease    lockMode = "lease"
	lockAdvisory lockMode = "advisorylock"
	lockDual     lockMode = "dual" // lease, then the advisory lock (1.x default)
	lockNone     lockMode = "none"
)

// Defaults of the real node.
const (
	defaultHTTPPort        = 6688
	defaultLeaseDuration   = 10 * time.Second
	defaultLeaseRefresh    = time.Second
	defaultAdvisoryLockID  = 1027321974924625846 // 1.x ADVISORY_LOCK_ID
	defaultAdvisoryCheck   = time.Second
	defaultChainID         = "1"
	defaultJSONConsole     = true // the real default is false; JSON lines are what tests read (see doc.go)
	envSource              = "environment"
	secretsFallbackSource  = "secrets"
	legacyEnvUnsupportedV2 = "must not be set: unsupported with config v2"
)

// nodeConfig is the node's effective configuration, whichever generation it came from.
type nodeConfig struct {
	Gen           generation
	RootDir       string
	HTTPPort      int
	DatabaseURL   string // secret
	DB            dbTarget
	LockMode      lockMode
	LeaseDuration time.Duration
	LeaseRefresh  time.Duration
	AdvisoryID    int64
	AdvisoryCheck time.Duration
	JSONConsole   bool
	LogLevel      zapcore.Level
	ChainID       string
	ChainWSURLs   []string // the chain's primary nodes (2.x [[EVM.Nodes]] WSURL, not SendOnly; 1.x ETH_URL)
	Keystore      string   // secret; 2.x Password.Keystore, or the -p file (which wins)
}

// lookupEnv is os.LookupEnv, injected for tests.
type lookupEnv func(key string) (string, bool)

func defaultConfig(gen generation) nodeConfig {
	root := "/.chainlink"
	if home, err := os.UserHomeDir(); err == nil {
		root = filepath.Join(home, ".chainlink")
	}
	return nodeConfig{
		Gen:           gen,
		RootDir:       root,
		HTTPPort:      defaultHTTPPort,
		LockMode:      lockLease,
		LeaseDuration: defaultLeaseDuration,
		LeaseRefresh:  defaultLeaseRefresh,
		AdvisoryID:    defaultAdvisoryLockID,
		AdvisoryCheck: defaultAdvisoryCheck,
		JSONConsole:   defaultJSONConsole,
		LogLevel:      zapcore.InfoLevel,
		ChainID:       defaultChainID,
	}
}

// loadEnvConfig reads a 1.x node's configuration from its environment.
func loadEnvConfig(env lookupEnv) (nodeConfig, error) {
	c := defaultConfig(gen1)
	c.LockMode = lockDual
	r := envReader{env: env}
	if v, ok := env("ROOT"); ok && v != "" {
		c.RootDir = v
	}
	r.port("CHAINLINK_PORT", &c.HTTPPort)
	if v, ok := env("DATABASE_LOCKING_MODE"); ok && v != "" {
		c.LockMode = lockMode(v)
		switch c.LockMode {
		case lockLease, lockAdvisory, lockDual, lockNone:
		default:
			r.fail("DATABASE_LOCKING_MODE", fmt.Errorf("%w %q: want lease, advisorylock, dual or none", errInvalid, v))
		}
	}
	r.duration("LEASE_LOCK_DURATION", &c.LeaseDuration)
	r.duration("LEASE_LOCK_REFRESH_INTERVAL", &c.LeaseRefresh)
	r.duration("ADVISORY_LOCK_CHECK_INTERVAL", &c.AdvisoryCheck)
	r.int64("ADVISORY_LOCK_ID", &c.AdvisoryID)
	r.bool("JSON_CONSOLE", &c.JSONConsole)
	r.level("LOG_LEVEL", &c.LogLevel)
	if v, ok := env("ETH_CHAIN_ID"); ok && v != "" {
		c.ChainID = v
	}
	if v, ok := env("ETH_URL"); ok && v != "" {
		c.ChainWSURLs = []string{v}
	}
	allowSimple := false
	r.bool("SKIP_DATABASE_PASSWORD_COMPLEXITY_CHECK", &allowSimple)
	if r.err != nil {
		return nodeConfig{}, r.err
	}
	c.DatabaseURL, _ = env("DATABASE_URL")
	db, err := checkDatabaseURL(envSource, "DATABASE_URL", c.DatabaseURL, allowSimple)
	if err != nil {
		return nodeConfig{}, err
	}
	c.DB = db
	if err := checkLease(envSource, "LEASE_LOCK_REFRESH_INTERVAL", c); err != nil {
		return nodeConfig{}, err
	}
	return c, nil
}

// tomlConfig is the part of config.toml the stand-in models; other keys are tolerated.
type tomlConfig struct {
	RootDir *string `toml:"RootDir"`
	Log     struct {
		Level       *string `toml:"Level"`
		JSONConsole *bool   `toml:"JSONConsole"`
	} `toml:"Log"`
	WebServer struct {
		HTTPPort *int64 `toml:"HTTPPort"`
	} `toml:"WebServer"`
	Database struct {
		Lock struct {
			Enabled              *bool   `toml:"Enabled"`
			LeaseDuration        *string `toml:"LeaseDuration"`
			LeaseRefreshInterval *string `toml:"LeaseRefreshInterval"`
		} `toml:"Lock"`
	} `toml:"Database"`
	EVM []struct {
		ChainID any   `toml:"ChainID"`
		Enabled *bool `toml:"Enabled"`
		Nodes   []struct {
			WSURL    *string `toml:"WSURL"`
			SendOnly *bool   `toml:"SendOnly"`
		} `toml:"Nodes"`
	} `toml:"EVM"`
}

// tomlSecrets is the part of secrets.toml the stand-in models.
type tomlSecrets struct {
	Database struct {
		URL                  *string `toml:"URL"`
		AllowSimplePasswords *bool   `toml:"AllowSimplePasswords"`
	} `toml:"Database"`
	Password struct {
		Keystore *string `toml:"Keystore"`
	} `toml:"Password"`
}

// loadTOMLConfig reads a 2.x node's configuration: the -config files, then CL_CONFIG, then the -secrets files,
// then the CL_ environment overrides. Like the real node it refuses 1.x environment variables.
func loadTOMLConfig(inv invocation, env lookupEnv) (nodeConfig, error) {
	if err := checkLegacyEnv(env); err != nil {
		return nodeConfig{}, err
	}
	var tc tomlConfig
	for _, path := range inv.configFiles {
		if err := decodeTOMLFile(path, &tc, false); err != nil {
			return nodeConfig{}, err
		}
	}
	if v, ok := env("CL_CONFIG"); ok && v != "" {
		if err := decodeTOML("CL_CONFIG", []byte(v), &tc, false); err != nil {
			return nodeConfig{}, err
		}
	}
	var ts tomlSecrets
	for _, path := range inv.secretsFiles {
		if err := decodeTOMLFile(path, &ts, true); err != nil {
			return nodeConfig{}, err
		}
	}
	c, err := applyTOMLConfig(joinOr(inv.configFiles, "config"), tc)
	if err != nil {
		return nodeConfig{}, err
	}
	if err := applyTOMLSecrets(inv.secretsFiles, ts, env, &c); err != nil {
		return nodeConfig{}, err
	}
	return c, nil
}

func applyTOMLConfig(source string, tc tomlConfig) (nodeConfig, error) {
	c := defaultConfig(gen2)
	fail := func(key string, err error) (nodeConfig, error) {
		return nodeConfig{}, &inputError{Source: source, Key: key, Err: err}
	}
	if tc.RootDir != nil && *tc.RootDir != "" {
		c.RootDir = *tc.RootDir
	}
	if tc.Log.Level != nil {
		lvl, err := parseLevel(*tc.Log.Level)
		if err != nil {
			return fail("Log.Level", err)
		}
		c.LogLevel = lvl
	}
	if tc.Log.JSONConsole != nil {
		c.JSONConsole = *tc.Log.JSONConsole
	}
	if p := tc.WebServer.HTTPPort; p != nil {
		if *p < 1 || *p > 65535 {
			return fail("WebServer.HTTPPort", fmt.Errorf("%w %d: want 1..65535", errInvalid, *p))
		}
		c.HTTPPort = int(*p)
	}
	lock := tc.Database.Lock
	if lock.Enabled != nil && !*lock.Enabled {
		c.LockMode = lockNone
	}
	for _, d := range []struct {
		key string
		raw *string
		dst *time.Duration
	}{
		{"Database.Lock.LeaseDuration", lock.LeaseDuration, &c.LeaseDuration},
		{"Database.Lock.LeaseRefreshInterval", lock.LeaseRefreshInterval, &c.LeaseRefresh},
	} {
		if d.raw == nil {
			continue
		}
		v, err := parseDuration(*d.raw)
		if err != nil {
			return fail(d.key, err)
		}
		*d.dst = v
	}
	if err := checkLease(source, "Database.Lock.LeaseRefreshInterval", c); err != nil {
		return nodeConfig{}, err
	}
	for i, evm := range tc.EVM {
		if evm.Enabled != nil && !*evm.Enabled {
			continue
		}
		switch id := evm.ChainID.(type) {
		case string:
			c.ChainID = id
		case int64:
			c.ChainID = strconv.FormatInt(id, 10)
		case nil:
			return fail(fmt.Sprintf("EVM[%d].ChainID", i), fmt.Errorf("%w: required", errMissing))
		default:
			return fail(fmt.Sprintf("EVM[%d].ChainID", i), fmt.Errorf("%w: want a string or an integer", errWrongType))
		}
		for _, n := range evm.Nodes {
			if n.WSURL != nil && *n.WSURL != "" && (n.SendOnly == nil || !*n.SendOnly) {
				c.ChainWSURLs = append(c.ChainWSURLs, *n.WSURL)
			}
		}
		break
	}
	return c, nil
}

func applyTOMLSecrets(files []string, ts tomlSecrets, env lookupEnv, c *nodeConfig) error {
	source := joinOr(files, secretsFallbackSource)
	allowSimple := ts.Database.AllowSimplePasswords != nil && *ts.Database.AllowSimplePasswords
	if v, ok := env("CL_DATABASE_ALLOW_SIMPLE_PASSWORDS"); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return &inputError{Source: envSource, Key: "CL_DATABASE_ALLOW_SIMPLE_PASSWORDS", Err: fmt.Errorf("%w %q: want a boolean", errInvalid, v)}
		}
		allowSimple = b
	}
	urlSource, urlKey := source, "Database.URL"
	if ts.Database.URL != nil {
		c.DatabaseURL = *ts.Database.URL
	}
	if v, ok := env("CL_DATABASE_URL"); ok && v != "" {
		c.DatabaseURL, urlSource, urlKey = v, envSource, "CL_DATABASE_URL"
	}
	db, err := checkDatabaseURL(urlSource, urlKey, c.DatabaseURL, allowSimple)
	if err != nil {
		return err
	}
	c.DB = db
	ksSource, ksKey := source, "Password.Keystore"
	if ts.Password.Keystore != nil {
		c.Keystore = *ts.Password.Keystore
	}
	if v, ok := env("CL_PASSWORD_KEYSTORE"); ok && v != "" {
		c.Keystore, ksSource, ksKey = v, envSource, "CL_PASSWORD_KEYSTORE"
	}
	if c.Keystore == "" {
		return &inputError{Source: ksSource, Key: ksKey, Err: fmt.Errorf("%w: the keystore password is required", errMissing)}
	}
	if err := checkKeystoreInput(c.Keystore); err != nil {
		return &inputError{Source: ksSource, Key: ksKey, Err: err}
	}
	return nil
}

// legacyEnv are 1.x variables a 2.x node refuses (core/config/v2: validateEnv); the mapped ones are allowed
// only when equal to their CL_ successor. LOG_LEVEL is the one exception the node tolerates.
var legacyEnv = map[string]string{
	"DATABASE_URL":                            "CL_DATABASE_URL",
	"DATABASE_BACKUP_URL":                     "CL_DATABASE_BACKUP_URL",
	"SKIP_DATABASE_PASSWORD_COMPLEXITY_CHECK": "CL_DATABASE_ALLOW_SIMPLE_PASSWORDS",
	"CHAINLINK_DEV":                           "CL_DEV",
	"ROOT":                                    "",
	"CHAINLINK_PORT":                          "",
	"CHAINLINK_TLS_PORT":                      "",
	"DATABASE_LOCKING_MODE":                   "",
	"DATABASE_TIMEOUT":                        "",
	"LEASE_LOCK_DURATION":                     "",
	"LEASE_LOCK_REFRESH_INTERVAL":             "",
	"ADVISORY_LOCK_ID":                        "",
	"ADVISORY_LOCK_CHECK_INTERVAL":            "",
	"JSON_CONSOLE":                            "",
	"ETH_URL":                                 "",
	"ETH_HTTP_URL":                            "",
	"ETH_CHAIN_ID":                            "",
	"LINK_CONTRACT_ADDRESS":                   "",
	"SECURE_COOKIES":                          "",
	"ALLOW_ORIGINS":                           "",
	"FEATURE_EXTERNAL_INITIATORS":             "",
}

func checkLegacyEnv(env lookupEnv) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(legacyEnv)) {
		v, ok := env(k)
		if !ok {
			continue
		}
		if k2 := legacyEnv[k]; k2 != "" {
			if v2, _ := env(k2); v2 != v {
				errs = append(errs, &inputError{Source: envSource, Key: k,
					Err: fmt.Errorf("%w: %s and %s must be equal, or %s must not be set", errInvalid, k, k2, k2)})
			}
			continue
		}
		errs = append(errs, &inputError{Source: envSource, Key: k, Err: fmt.Errorf("%w: %s", errInvalid, legacyEnvUnsupportedV2)})
	}
	return errors.Join(errs...)
}

// checkLease applies the node's rule: refresh at most half the lease (both positive).
func checkLease(source, key string, c nodeConfig) error {
	if c.LeaseDuration <= 0 || c.LeaseRefresh <= 0 {
		return &inputError{Source: source, Key: key, Err: fmt.Errorf("%w: lease duration (%s) and refresh interval (%s) must be positive", errInvalid, c.LeaseDuration, c.LeaseRefresh)}
	}
	if c.LeaseRefresh > c.LeaseDuration/2 {
		return &inputError{Source: source, Key: key, Err: fmt.Errorf("%w %s: must be less than or equal to half of the lease duration (%s)", errInvalid, c.LeaseRefresh, c.LeaseDuration)}
	}
	return nil
}

func decodeTOMLFile(path string, into any, secret bool) error {
	data, err := readInput(path)
	if err != nil {
		return err
	}
	return decodeTOML(path, data, into, secret)
}

var typeMismatch = regexp.MustCompile(`cannot decode TOML (\w+) into .* of type (\S+)$`)

// decodeTOML decodes data into into. Errors say where and what, never quote a value, and for secret inputs
// give only the position.
func decodeTOML(source string, data []byte, into any, secret bool) error {
	err := toml.Unmarshal(data, into)
	if err == nil {
		return nil
	}
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return &inputError{Source: source, Err: fmt.Errorf("%w: not valid TOML", errMalformed)}
	}
	row, col := de.Position()
	key := strings.Join(de.Key(), ".")
	if m := typeMismatch.FindStringSubmatch(de.Error()); m != nil {
		return &inputError{Source: source, Key: key, Err: fmt.Errorf("%w at line %d: got a TOML %s, want %s", errWrongType, row, m[1], strings.TrimPrefix(m[2], "*"))}
	}
	if secret {
		return &inputError{Source: source, Key: key, Err: fmt.Errorf("%w: not valid TOML at line %d, column %d", errMalformed, row, col)}
	}
	return &inputError{Source: source, Key: key, Err: fmt.Errorf("%w: not valid TOML at line %d, column %d: %s", errMalformed, row, col, strings.TrimPrefix(de.Error(), "toml: "))}
}

// envReader collects the first error of a series of 1.x environment reads.
type envReader struct {
	env lookupEnv
	err error
}

func (r *envReader) fail(key string, err error) {
	if r.err == nil {
		r.err = &inputError{Source: envSource, Key: key, Err: err}
	}
}

func (r *envReader) get(key string) (string, bool) {
	v, ok := r.env(key)
	return v, ok && v != ""
}

func (r *envReader) port(key string, dst *int) {
	if v, ok := r.get(key); ok {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			r.fail(key, fmt.Errorf("%w %q: want a port 1..65535", errInvalid, v))
			return
		}
		*dst = p
	}
}

func (r *envReader) duration(key string, dst *time.Duration) {
	if v, ok := r.get(key); ok {
		d, err := parseDuration(v)
		if err != nil {
			r.fail(key, err)
			return
		}
		*dst = d
	}
}

func (r *envReader) int64(key string, dst *int64) {
	if v, ok := r.get(key); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			r.fail(key, fmt.Errorf("%w %q: want an integer", errInvalid, v))
			return
		}
		*dst = n
	}
}

func (r *envReader) bool(key string, dst *bool) {
	if v, ok := r.get(key); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			r.fail(key, fmt.Errorf("%w %q: want a boolean", errInvalid, v))
			return
		}
		*dst = b
	}
}

func (r *envReader) level(key string, dst *zapcore.Level) {
	if v, ok := r.get(key); ok {
		lvl, err := parseLevel(v)
		if err != nil {
			r.fail(key, err)
			return
		}
		*dst = lvl
	}
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%w %q: want a duration such as 10s", errInvalid, v)
	}
	return d, nil
}

// parseLevel reads the node's log levels (debug, info, warn, error, crit, panic, fatal).
func parseLevel(v string) (zapcore.Level, error) {
	if strings.EqualFold(v, "crit") {
		return zapcore.DPanicLevel, nil
	}
	lvl, err := zapcore.ParseLevel(strings.ToLower(v))
	if err != nil {
		return 0, fmt.Errorf("%w %q: want debug, info, warn, error, crit, panic or fatal", errInvalid, v)
	}
	return lvl, nil
}

// joinOr names the files a merged setting came from.
func joinOr(files []string, fallback string) string {
	if len(files) == 0 {
		return fallback
	}
	return strings.Join(files, ", ")
}
