package infra_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

const (
	bucket = "cl-agent-releases"
	// runTimeout bounds one run of the user-data (a few aws CLI and curl calls against loopback servers).
	runTimeout = 90 * time.Second
)

// fakeAgent stands in for the cl-agent binary in the archive; user-data never runs it (systemd does).
const fakeAgent = `#!/bin/sh
echo "cl-agent $*" >> "$STUB_LOG"
`

const fakeUnit = "[Unit]\nDescription=cl-agent (test stand-in)\n"

// stub records its name and arguments; it stands in for dnf, systemctl and cfn-signal. As systemctl, `show -p
// ActiveState` answers the next word of FAKE_STATES (the last one once they run out), and `show -p Result` and
// `show -p ExecMainStatus` answer FAKE_RESULT and FAKE_STATUS: the unit's story as systemd would tell it.
const stub = `#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_LOG"
[ "$(basename "$0")" = systemctl ] && [ "$1" = show ] || exit 0
case "$3" in
ActiveState)
  n=$(( $(cat "$FAKE_COUNT" 2>/dev/null || echo 0) + 1 ))
  echo "$n" > "$FAKE_COUNT"
  set -- ${FAKE_STATES:-active}
  while [ "$n" -gt 1 ] && [ $# -gt 1 ]; do shift; n=$((n - 1)); done
  echo "$1" ;;
Result) echo "${FAKE_RESULT:-success}" ;;
ExecMainStatus) echo "${FAKE_STATUS:-0}" ;;
StatusText) echo "standby; node stopped" ;;
esac
`

// sampleParameters is one legal parameter set; TestSampleParametersAreLegal holds it to the template's
// constraints. Resource attributes stand in for what CloudFormation would substitute.
func sampleParameters() map[string]string {
	return map[string]string{
		"AWS::StackName":                     "cl-test",
		"AWS::Region":                        "us-east-1",
		"AgentS3Bucket":                      bucket,
		"AgentS3Key":                         "cl-agent/cl-agent_1.2.3_linux_amd64.tar.gz",
		"DBSecret":                           "arn:aws:secretsmanager:us-east-1:123456789012:secret:DBSecret-Ab12Cd",
		"ApiSecret":                          "arn:aws:secretsmanager:us-east-1:123456789012:secret:ApiSecret-Ef34Gh",
		"WalletSecret":                       "arn:aws:secretsmanager:us-east-1:123456789012:secret:WalletSecret-Ij56Kl",
		"BlockchainNetwork":                  "Ethereum-Mainnet",
		"ChainId":                            "0",
		"LinkContractAddress":                "",
		"BlockchainNodeUrl":                  "wss://mainnet.example.net/ws/v3/$HOME?token=x&y=$(id)", // shell syntax stays text
		"BlockchainNodeHttpUrl":              "https://mainnet.example.net/v3/0123abcd",
		"ChainlinkNodeGUIEmail":              "ops+node@example.com",
		"ChainlinkDatabase.Endpoint.Address": "cl-test-chainlinkdatabase-abc123.cdefghijklmn.us-east-1.rds.amazonaws.com",
		"ChainlinkDatabase.Endpoint.Port":    "5432",
		"DBName":                             "chainlink",
		"DBMasterUsername":                   "postgresadmin",
		"ChainlinkVersion":                   "",
		"ChainlinkMajorVersion":              "2",
		"ImageUpgradePolicy":                 "manual",
		"ImageUpgradeWindow":                 "",
		"ChainlinkLogGroup":                  "cl-test-ChainlinkLogGroup-Xy9Zw8",
		"HealthListen":                       "0.0.0.0:9180",
		"P2PAnnounce":                        "", // no P2P load balancer (networking_test.go boots with one)
		// AgentSHA256, RDSCABundleURL and Network are set per run.
	}
}

// networkFor evaluates the header's Network variable: !FindInMap [Networks, BlockchainNetwork, Name].
func networkFor(t testing.TB, tpl *template, blockchainNetwork string) string {
	t.Helper()
	name, ok := get(tpl.Mappings, "Networks", blockchainNetwork, "Name").(string)
	if !ok {
		t.Fatalf("Mappings.Networks has no %q", blockchainNetwork)
	}
	return name
}

// checkParameters holds values to the template's constraints on the parameters they name.
func checkParameters(tpl *template, values map[string]string) error {
	var errs []error
	for name, v := range values {
		p, ok := tpl.Parameters[name]
		if !ok {
			continue
		}
		if pat, ok := p["AllowedPattern"].(string); ok && !regexp.MustCompile("^(?:"+pat+")$").MatchString(v) {
			errs = append(errs, fmt.Errorf("%s=%q does not match %s", name, v, pat))
		}
		if allowed, ok := p["AllowedValues"].([]any); ok && !slices.Contains(strs(allowed), v) {
			if !slices.ContainsFunc(allowed, func(a any) bool { return fmt.Sprint(a) == v }) {
				errs = append(errs, fmt.Errorf("%s=%q is not one of %v", name, v, allowed))
			}
		}
		if max, ok := p["MaxLength"].(int); ok && len(v) > max {
			errs = append(errs, fmt.Errorf("%s is longer than %d", name, max))
		}
		if p["Type"] == "Number" {
			n, err := strconv.Atoi(v)
			if min, ok := p["MinValue"].(int); err != nil || ok && n < min {
				errs = append(errs, fmt.Errorf("%s=%q is not a number >= %v", name, v, p["MinValue"]))
			}
		}
	}
	return errors.Join(errs...)
}

// stackRefuses evaluates the template's Rules over values, as CloudFormation does before it creates or updates
// anything (a parameter not in values takes its Default), and returns the AssertDescription of each assertion that
// fails in a rule whose RuleCondition holds.
func stackRefuses(t testing.TB, tpl *template, values map[string]string) []string {
	t.Helper()
	var refusals []string
	for _, name := range slices.Sorted(maps.Keys(tpl.Rules)) {
		rule := tpl.Rules[name]
		if cond, ok := rule["RuleCondition"]; ok && !ruleBool(t, tpl, cond, values) {
			continue
		}
		for _, a := range asList(rule["Assertions"]) {
			if !ruleBool(t, tpl, get(a, "Assert"), values) {
				desc, _ := get(a, "AssertDescription").(string)
				refusals = append(refusals, name+": "+desc)
			}
		}
	}
	return refusals
}

func ruleBool(t testing.TB, tpl *template, expr any, values map[string]string) bool {
	t.Helper()
	b, ok := ruleValue(t, tpl, expr, values).(bool)
	if !ok {
		t.Fatalf("rule expression %v is not a condition", expr)
	}
	return b
}

// ruleValue evaluates the rule functions this template uses: Ref, Fn::Equals, Fn::Not, Fn::And, Fn::Or. A literal
// is its text, as CloudFormation compares parameter values.
func ruleValue(t testing.TB, tpl *template, expr any, values map[string]string) any {
	t.Helper()
	m, ok := expr.(map[string]any)
	if !ok {
		return fmt.Sprint(expr)
	}
	if len(m) != 1 {
		t.Fatalf("rule expression %v is not one function", expr)
	}
	for fn, arg := range m {
		args := asList(arg)
		switch fn {
		case "Ref":
			name, _ := arg.(string)
			if v, ok := values[name]; ok {
				return v
			}
			p, ok := tpl.Parameters[name]
			if !ok {
				t.Fatalf("a rule refers to %s, which is no parameter", name)
			}
			if d, ok := p["Default"]; ok {
				return fmt.Sprint(d)
			}
			return ""
		case "Fn::Equals":
			if len(args) != 2 {
				t.Fatalf("Fn::Equals takes two values: %v", arg)
			}
			return ruleValue(t, tpl, args[0], values) == ruleValue(t, tpl, args[1], values)
		case "Fn::Not":
			if len(args) != 1 {
				t.Fatalf("Fn::Not takes one condition: %v", arg)
			}
			return !ruleBool(t, tpl, args[0], values)
		case "Fn::And", "Fn::Or":
			and := fn == "Fn::And"
			for _, a := range args {
				if ruleBool(t, tpl, a, values) != and {
					return !and
				}
			}
			return and
		default:
			t.Fatalf("rule function %s: not evaluated by this test", fn)
		}
	}
	panic("unreachable")
}

// userDataFixture is what every run of the script shares: moto's S3, an HTTPS server with the CA bundle, the
// assembled-but-unsubstituted user-data.
type userDataFixture struct {
	tpl      *template
	header   string
	body     string
	moto     *testenv.Moto
	caURL    string // the served stand-in bundle
	caPEM    []byte
	caFile   string // trust for curl (the test server's certificate)
	stubDir  string
	awsConf  string
	archives map[string][]byte
}

func newUserDataFixture(t *testing.T) *userDataFixture {
	t.Helper()
	tpl := loadTemplate(t)
	header, _, body := nodeUserData(t, tpl)
	f := &userDataFixture{tpl: tpl, header: header, body: body, moto: testenv.MotoT(t), archives: map[string][]byte{}}
	dir := t.TempDir()

	// The stand-in RDS CA bundle, over HTTPS as the parameter requires.
	f.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("stand-in RDS CA")})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/global/global-bundle.pem" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(f.caPEM)
	}))
	t.Cleanup(srv.Close)
	f.caURL = srv.URL + "/global/global-bundle.pem"
	f.caFile = filepath.Join(dir, "test-server-ca.pem")
	writeFile(t, f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)

	f.stubDir = filepath.Join(dir, "bin")
	for _, name := range []string{"dnf", "systemctl", "cfn-signal"} {
		writeFile(t, filepath.Join(f.stubDir, name), []byte(stub), 0o755)
	}
	// Path-style addressing: moto serves every bucket on one loopback host.
	f.awsConf = filepath.Join(dir, "aws-config")
	writeFile(t, f.awsConf, []byte("[default]\ns3 =\n    addressing_style = path\n"), 0o644)

	s3Put(t, f.moto.URL+"/"+bucket, nil)
	return f
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// s3Put creates a bucket (no body) or an object in moto, which takes unsigned path-style requests.
func s3Put(t testing.TB, url string, body []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s: %s %s", url, resp.Status, msg)
	}
}

// makeArchive builds a release archive the way packaging/package.sh lays it out.
func makeArchive(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		mode := int64(0o644)
		if name == "cl-agent" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// run is one boot: the template's header with values substituted, then the embedded script, run by bash in a
// scratch root.
type run struct {
	values map[string]string // header values (complete)
	env    []string          // extra environment (FAKE_CHECK_*, CHECK_ATTEMPTS)
}

type outcome struct {
	err    error
	stderr string
	root   string
	calls  []string // the stubs' log, in order
}

func (f *userDataFixture) boot(t *testing.T, r run) outcome {
	t.Helper()
	if err := checkParameters(f.tpl, r.values); err != nil {
		t.Fatalf("the test's parameters are not legal for the template: %v", err)
	}
	header, err := substitute(f.header, r.values)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "user-data")
	writeFile(t, script, []byte(header+f.body), 0o700)
	root := filepath.Join(dir, "root")
	stubLog := filepath.Join(dir, "calls.log")

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = dir
	cmd.Env = append([]string{
		"PATH=" + f.stubDir + ":" + os.Getenv("PATH"),
		"HOME=" + dir,
		"DESTDIR=" + root,
		"CHECK_INTERVAL=0",
		"STUB_LOG=" + stubLog,
		"FAKE_COUNT=" + filepath.Join(dir, "check-count"),
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_ENDPOINT_URL=" + f.moto.URL,
		"AWS_CONFIG_FILE=" + f.awsConf,
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"CURL_CA_BUNDLE=" + f.caFile,
	}, r.env...)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("user-data did not finish within %s:\n%s", runTimeout, stderr.String())
	}
	var calls []string
	if data, rerr := os.ReadFile(stubLog); rerr == nil {
		calls = strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	return outcome{err: err, stderr: stderr.String(), root: root, calls: calls}
}

// upload puts an archive at key and returns the values for a boot that installs it.
func (f *userDataFixture) upload(t *testing.T, key string, archive []byte) {
	t.Helper()
	s3Put(t, f.moto.URL+"/"+bucket+"/"+key, archive)
}

func (f *userDataFixture) values(t *testing.T, key, sha string, change map[string]string) map[string]string {
	t.Helper()
	v := sampleParameters()
	v["AgentS3Key"] = key
	v["AgentSHA256"] = sha
	v["RDSCABundleURL"] = f.caURL
	maps.Copy(v, change)
	v["Network"] = networkFor(t, f.tpl, v["BlockchainNetwork"])
	return v
}

func callIndex(calls []string, prefix string) int {
	return slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
}

func countCalls(calls []string, prefix string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestUserData runs the node user-data for real. It installs the agent only from an archive whose SHA-256 is the
// one the stack was given, writes a configuration cl-agent's own loader accepts (the upgrade policy included),
// refuses an upgrade policy the agent would refuse, starts cl-agent only after its unit reported ready
// (Type=notify), and tells CloudFormation how the boot went either way.
func TestUserData(t *testing.T) {
	f := newUserDataFixture(t)
	genuine := makeArchive(t, map[string]string{"cl-agent": fakeAgent, "cl-agent.service": fakeUnit})
	genuineSHA := sha256Hex(genuine)

	// expectInstalled checks a successful boot: files in place, config valid, steps in order, success signalled.
	expectInstalled := func(t *testing.T, o outcome, v map[string]string) *config.Config {
		t.Helper()
		if o.err != nil {
			t.Fatalf("user-data failed: %v\n%s", o.err, o.stderr)
		}
		bin, err := os.ReadFile(filepath.Join(o.root, "usr/local/bin/cl-agent"))
		if err != nil || string(bin) != fakeAgent {
			t.Fatalf("cl-agent not installed from the archive: %v", err)
		}
		if fi, _ := os.Stat(filepath.Join(o.root, "usr/local/bin/cl-agent")); fi.Mode().Perm() != 0o755 {
			t.Errorf("cl-agent mode %v, want 0755", fi.Mode().Perm())
		}
		if unit, err := os.ReadFile(filepath.Join(o.root, "etc/systemd/system/cl-agent.service")); err != nil || string(unit) != fakeUnit {
			t.Errorf("the unit was not installed from the archive: %v", err)
		}
		if ca, err := os.ReadFile(filepath.Join(o.root, "etc/cl-agent/rds-ca.pem")); err != nil || !bytes.Equal(ca, f.caPEM) {
			t.Errorf("the RDS CA bundle was not installed: %v", err)
		}
		order := []string{
			"dnf install -y docker aws-cfn-bootstrap tar gzip",
			"systemctl enable --now docker.service",
			"systemctl enable --now --no-block cl-agent.service",
			"systemctl show -p ActiveState --value cl-agent.service",
			"cfn-signal --exit-code 0 ",
		}
		last := -1
		for _, step := range order {
			i := callIndex(o.calls, step)
			if i <= last {
				t.Fatalf("step %q missing or out of order in %q", step, o.calls)
			}
			last = i
		}
		sig := o.calls[last]
		for _, arg := range []string{"--stack cl-test", "--resource ChainlinkNodeAutoScalingGroup", "--region us-east-1"} {
			if !strings.Contains(sig, arg) {
				t.Errorf("cfn-signal %q lacks %q", sig, arg)
			}
		}
		if n := countCalls(o.calls, "cfn-signal"); n != 1 {
			t.Errorf("%d signals, want 1", n)
		}

		data, err := os.ReadFile(filepath.Join(o.root, "etc/cl-agent/config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(o.root, "etc/cl-agent/config.yaml")); fi.Mode().Perm() != 0o640 {
			t.Errorf("config.yaml mode %v, want 0640", fi.Mode().Perm())
		}
		cfg, err := config.Parse(data)
		if err != nil {
			t.Fatalf("cl-agent's loader refuses the config the user-data wrote: %v\n%s", err, data)
		}
		return cfg
	}

	t.Run("InstallsWhenTheChecksumMatches", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/genuine.tar.gz"
		f.upload(t, key, genuine)
		v := f.values(t, key, genuineSHA, nil)
		o := f.boot(t, run{values: v})
		cfg := expectInstalled(t, o, v)

		want := config.Default()
		want.Secrets.DatabasePassword = config.SecretRef{ID: v["DBSecret"], JSONKey: "password"}
		want.Secrets.APIPassword = config.SecretRef{ID: v["ApiSecret"]}
		want.Secrets.KeystorePassword = config.SecretRef{ID: v["WalletSecret"]}
		want.Node.Network = "Ethereum-Mainnet"
		want.Node.WSURL = v["BlockchainNodeUrl"]
		want.Node.HTTPURL = v["BlockchainNodeHttpUrl"]
		want.Node.APIEmail = v["ChainlinkNodeGUIEmail"]
		want.Node.Database = config.Database{
			Host: v["ChainlinkDatabase.Endpoint.Address"], Port: 5432, Name: "chainlink", User: "postgresadmin",
			SSLMode: "verify-full", SSLRootCert: "/etc/cl-agent/rds-ca.pem",
		}
		want.Image.Major = 2
		want.Container.Log.Group = v["ChainlinkLogGroup"]
		want.Health.Listen = "0.0.0.0:9180"
		if !reflect.DeepEqual(*cfg, want) {
			t.Errorf("config differs from the stack's parameters:\ngot  %+v\nwant %+v", *cfg, want)
		}
	})

	t.Run("WritesACustomChainAndLoopbackHealthWithoutALoadBalancer", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/custom.tar.gz"
		f.upload(t, key, genuine)
		v := f.values(t, key, genuineSHA, map[string]string{
			"BlockchainNetwork":     "xDai-Mainnet", // the Quick Start's name
			"ChainId":               "128",
			"LinkContractAddress":   "0x9e004545c59D359F6B7BFB06a26390b087717b42",
			"BlockchainNodeHttpUrl": "",
			"ChainlinkVersion":      "2.19.0",
			"HealthListen":          "127.0.0.1:9180",
		})
		cfg := expectInstalled(t, f.boot(t, run{values: v}), v)
		if cfg.Node.Network != "Gnosis-Mainnet" || cfg.Node.ChainID != 128 || cfg.Node.LinkContract != v["LinkContractAddress"] ||
			cfg.Node.HTTPURL != "" || cfg.Image.Tag != "2.19.0" || cfg.Health.Listen != "127.0.0.1:9180" {
			t.Errorf("config: %+v", *cfg)
		}
	})

	// signalledFailure checks a boot that failed at step and told the stack so, once, with message.
	signalledFailure := func(t *testing.T, o outcome, step, message string) {
		t.Helper()
		if o.err == nil {
			t.Fatalf("user-data succeeded; want a failure at %s\n%s", step, o.stderr)
		}
		if !strings.Contains(o.stderr, "FAILED at "+step) || !strings.Contains(o.stderr, message) {
			t.Errorf("stderr does not say it failed at %q with %q:\n%s", step, message, o.stderr)
		}
		sig := o.calls[callIndex(o.calls, "cfn-signal")]
		if !strings.HasPrefix(sig, "cfn-signal --exit-code 1 ") || !strings.Contains(sig, "failed at "+step+": ") || !strings.Contains(sig, message) {
			t.Errorf("want one failure signal naming %q and %q, got %q", step, message, o.calls)
		}
		if countCalls(o.calls, "cfn-signal") != 1 {
			t.Errorf("want exactly one signal, got %q", o.calls)
		}
	}
	// refused checks a boot that must fail at step before cl-agent is started, and signal failure.
	refused := func(t *testing.T, o outcome, step, message string) {
		t.Helper()
		signalledFailure(t, o, step, message)
		for _, c := range o.calls {
			if strings.HasPrefix(c, "systemctl ") && strings.Contains(c, "cl-agent") {
				t.Errorf("cl-agent was enabled or started: %q", c)
			}
		}
	}
	nothingInstalled := func(t *testing.T, o outcome) {
		t.Helper()
		for _, p := range []string{"usr/local/bin/cl-agent", "usr/local/bin/cl-agent.new", "etc/systemd/system/cl-agent.service", "etc/cl-agent/config.yaml"} {
			if exists(filepath.Join(o.root, p)) {
				t.Errorf("%s was installed", p)
			}
		}
		if callIndex(o.calls, "cl-agent ") >= 0 {
			t.Errorf("the unverified binary ran: %q", o.calls)
		}
	}

	// image.upgrade is written always (manual unless the stack says auto), image.upgrade_window only when set.
	for _, tc := range []struct {
		name            string
		change          map[string]string
		upgrade, window string
	}{
		{"WritesManualUpgradesByDefault", nil, config.UpgradeManual, ""},
		{"WritesManualUpgradesWithAPinnedTag", map[string]string{"ChainlinkVersion": "2.19.0"}, config.UpgradeManual, ""},
		{"WritesAutoUpgradesWithAWindow", map[string]string{"ImageUpgradePolicy": "auto", "ImageUpgradeWindow": "22:00-02:00"},
			config.UpgradeAuto, "22:00-02:00"},
		{"WritesAutoUpgradesAtAnyTime", map[string]string{"ImageUpgradePolicy": "auto"}, config.UpgradeAuto, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "cl-agent/" + tc.name + ".tar.gz"
			f.upload(t, key, genuine)
			v := f.values(t, key, genuineSHA, tc.change)
			o := f.boot(t, run{values: v})
			cfg := expectInstalled(t, o, v)
			if cfg.Image.Upgrade != tc.upgrade || cfg.Image.UpgradeWindow.String() != tc.window || cfg.Image.Tag != v["ChainlinkVersion"] {
				t.Errorf("image %+v, want upgrade %s, window %q, tag %q", cfg.Image, tc.upgrade, tc.window, v["ChainlinkVersion"])
			}
			data, err := os.ReadFile(filepath.Join(o.root, "etc/cl-agent/config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "\n  upgrade: "+tc.upgrade+"\n") {
				t.Errorf("image.upgrade is not written (it must be, default or not):\n%s", data)
			}
			if hasWindow := strings.Contains(string(data), "upgrade_window:"); hasWindow != (tc.window != "") {
				t.Errorf("image.upgrade_window written %t, want %t:\n%s", hasWindow, tc.window != "", data)
			}
		})
	}

	// What cl-agent would refuse (exit 2) fails the boot before the configuration is written, naming the
	// parameters to change. The stack's Rules refuse the first two sooner (TestRulesRefuseWhatTheAgentRefuses).
	for _, tc := range []struct {
		name    string
		change  map[string]string
		message string
	}{
		{"RefusesAutoUpgradesWithAPinnedTag", map[string]string{"ImageUpgradePolicy": "auto", "ChainlinkVersion": "2.19.0"},
			"auto upgrades choose the newest stable release, and image tag 2.19.0 is pinned: leave ChainlinkVersion empty, or set ImageUpgradePolicy to manual"},
		{"RefusesAnUpgradeWindowWithManualUpgrades", map[string]string{"ImageUpgradeWindow": "22:00-02:00"},
			"upgrade window 22:00-02:00 applies only to auto upgrades: set ImageUpgradePolicy to auto, or leave ImageUpgradeWindow empty"},
		{"RefusesAnUpgradeWindowThatStartsWhereItEnds", map[string]string{"ImageUpgradePolicy": "auto", "ImageUpgradeWindow": "02:00-02:00"},
			"upgrade window 02:00-02:00 starts where it ends"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "cl-agent/" + tc.name + ".tar.gz"
			f.upload(t, key, genuine)
			o := f.boot(t, run{values: f.values(t, key, genuineSHA, tc.change)})
			refused(t, o, "write /etc/cl-agent/config.yaml", tc.message)
			if exists(filepath.Join(o.root, "etc/cl-agent/config.yaml")) {
				t.Errorf("config written despite the refusal")
			}
		})
	}

	t.Run("RefusesAnArchiveReplacedInTheBucket", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/replaced.tar.gz"
		evil := makeArchive(t, map[string]string{"cl-agent": "#!/bin/sh\necho pwned\n", "cl-agent.service": fakeUnit})
		f.upload(t, key, evil)
		o := f.boot(t, run{values: f.values(t, key, genuineSHA, nil)})
		refused(t, o, "verify s3://"+bucket+"/"+key,
			fmt.Sprintf("checksum mismatch for s3://%s/%s: expected sha256 %s, got %s", bucket, key, genuineSHA, sha256Hex(evil)))
		nothingInstalled(t, o)
	})

	t.Run("RefusesAWrongChecksumParameter", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/wrong-sum.tar.gz"
		f.upload(t, key, genuine)
		wrong := sha256Hex([]byte("another release"))
		o := f.boot(t, run{values: f.values(t, key, wrong, nil)})
		refused(t, o, "verify s3://"+bucket+"/"+key, "expected sha256 "+wrong+", got "+genuineSHA)
		nothingInstalled(t, o)
	})

	t.Run("FailsWhenTheArchiveIsMissing", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/absent.tar.gz"
		o := f.boot(t, run{values: f.values(t, key, genuineSHA, nil)})
		refused(t, o, "download s3://"+bucket+"/"+key, "could not download s3://"+bucket+"/"+key)
		nothingInstalled(t, o)
	})

	t.Run("FailsWhenTheArchiveLacksTheUnit", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/no-unit.tar.gz"
		partial := makeArchive(t, map[string]string{"cl-agent": fakeAgent})
		f.upload(t, key, partial)
		o := f.boot(t, run{values: f.values(t, key, sha256Hex(partial), nil)})
		refused(t, o, "unpack s3://"+bucket+"/"+key, "the archive must hold cl-agent and cl-agent.service")
		nothingInstalled(t, o)
	})

	t.Run("FailsWhenTheCABundleCannotBeFetched", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/no-ca.tar.gz"
		f.upload(t, key, genuine)
		bad := strings.Replace(f.caURL, "global-bundle.pem", "missing.pem", 1)
		o := f.boot(t, run{values: f.values(t, key, genuineSHA, map[string]string{"RDSCABundleURL": bad})})
		refused(t, o, "download the RDS CA bundle", "could not download "+bad)
		if exists(filepath.Join(o.root, "etc/cl-agent/config.yaml")) {
			t.Errorf("config written after a failed step")
		}
	})

	t.Run("WaitsForTheUnitThroughRetryableRestarts", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/retry.tar.gz"
		f.upload(t, key, genuine)
		v := f.values(t, key, genuineSHA, nil)
		o := f.boot(t, run{values: v, env: []string{"FAKE_STATES=activating activating activating active", "START_POLL=0"}})
		expectInstalled(t, o, v)
		if n := countCalls(o.calls, "systemctl show -p ActiveState"); n != 4 {
			t.Errorf("the unit's state was read %d times, want 4 (three times activating, then active)", n)
		}
	})

	t.Run("GivesUpWhenTheUnitNeverReportsReady", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/never-ready.tar.gz"
		f.upload(t, key, genuine)
		o := f.boot(t, run{values: f.values(t, key, genuineSHA, nil), env: []string{"FAKE_STATES=activating", "START_POLL=1", "START_TIMEOUT=2"}})
		signalledFailure(t, o, "start cl-agent", "cl-agent not ready after 2s (state activating")
	})

	t.Run("FailsAtOnceWhenTheUnitFails", func(t *testing.T) {
		t.Parallel()
		key := "cl-agent/terminal.tar.gz"
		f.upload(t, key, genuine)
		o := f.boot(t, run{values: f.values(t, key, genuineSHA, nil),
			env: []string{"FAKE_STATES=activating failed", "FAKE_RESULT=exit-code", "FAKE_STATUS=5", "START_POLL=0"}})
		signalledFailure(t, o, "start cl-agent", "cl-agent failed: result exit-code, exit status 5")
		if n := countCalls(o.calls, "systemctl show -p ActiveState"); n != 2 {
			t.Errorf("the unit's state was read %d times after it failed, want 2", n)
		}
	})
}

// TestSampleParametersAreLegal: the parameter set the tests boot with is one CloudFormation would accept, and it
// covers every ${...} of the user-data header.
func TestSampleParametersAreLegal(t *testing.T) {
	tpl := loadTemplate(t)
	header, _, _ := nodeUserData(t, tpl)
	v := sampleParameters()
	v["AgentSHA256"] = sha256Hex(nil)
	v["RDSCABundleURL"] = tpl.Parameters["RDSCABundleURL"]["Default"].(string)
	v["Network"] = networkFor(t, tpl, v["BlockchainNetwork"])
	if err := checkParameters(tpl, v); err != nil {
		t.Fatal(err)
	}
	if _, err := substitute(header, v); err != nil {
		t.Fatal(err)
	}
	// The constraints are real: a quote, a plain-http CA URL, a bad checksum are refused.
	for name, bad := range map[string]string{
		"BlockchainNodeUrl": "wss://x'y", "RDSCABundleURL": "http://example.com/ca.pem", "AgentSHA256": "abc",
		"ChainlinkNodeGUIEmail": "not-an-email", "BlockchainNetwork": "Kovan-ETH-Testnet",
		"ImageUpgradePolicy": "always", "ImageUpgradeWindow": "24:00-02:00",
	} {
		if err := checkParameters(tpl, map[string]string{name: bad}); err == nil {
			t.Errorf("%s=%q accepted", name, bad)
		}
	}
}

// TestRulesRefuseWhatTheAgentRefuses: the stack refuses, before any host boots, the upgrade policies cl-agent
// would refuse (auto with a pinned tag; a window with manual), and takes the ones it accepts.
func TestRulesRefuseWhatTheAgentRefuses(t *testing.T) {
	tpl := loadTemplate(t)
	for _, tc := range []struct {
		name    string
		change  map[string]string
		refusal string // "" - accepted
	}{
		{"ManualByDefault", nil, ""},
		{"ManualWithAPinnedTag", map[string]string{"ChainlinkVersion": "2.19.0"}, ""},
		{"AutoWithAWindow", map[string]string{"ImageUpgradePolicy": "auto", "ImageUpgradeWindow": "22:00-02:00"}, ""},
		{"AutoWithAPinnedTag", map[string]string{"ImageUpgradePolicy": "auto", "ChainlinkVersion": "2.19.0"},
			"AutoUpgradeTakesNoPinnedTag: ImageUpgradePolicy auto upgrades to the newest stable release - leave ChainlinkVersion empty"},
		{"WindowWithManual", map[string]string{"ImageUpgradeWindow": "22:00-02:00"},
			"UpgradeWindowNeedsAutoUpgrades: ImageUpgradeWindow applies only with ImageUpgradePolicy auto."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := sampleParameters()
			maps.Copy(v, tc.change)
			if err := checkParameters(tpl, v); err != nil {
				t.Fatalf("the test's parameters are not legal for the template: %v", err)
			}
			got := stackRefuses(t, tpl, v)
			switch {
			case tc.refusal == "" && len(got) > 0:
				t.Errorf("the stack refuses %v", got)
			case tc.refusal != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.refusal)):
				t.Errorf("the stack refuses %q, want only %q", got, tc.refusal)
			}
		})
	}
}

// TestNetworksAreKnownToTheAgent: every BlockchainNetwork choice maps to a network cl-agent knows and still runs,
// and every network cl-agent knows can be chosen.
func TestNetworksAreKnownToTheAgent(t *testing.T) {
	tpl := loadTemplate(t)
	offered := map[string]bool{}
	for _, choice := range strs(tpl.Parameters["BlockchainNetwork"]["AllowedValues"]) {
		name := networkFor(t, tpl, choice)
		n, ok := config.LookupNetwork(name)
		if !ok || n.Retired {
			t.Errorf("BlockchainNetwork %s maps to %s, which cl-agent does not run (known: %v)", choice, name, config.NetworkNames())
		}
		offered[name] = true
		offered[choice] = true // the Quick Start's own names are agent names too
	}
	for _, name := range config.NetworkNames() {
		if !offered[name] {
			t.Errorf("cl-agent knows %s but BlockchainNetwork does not offer it", name)
		}
	}
	if d := tpl.Parameters["BlockchainNetwork"]["Default"]; d != config.Default().Node.Network {
		t.Errorf("BlockchainNetwork default %v, cl-agent's default %s", d, config.Default().Node.Network)
	}
}
