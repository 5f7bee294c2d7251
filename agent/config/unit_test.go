package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStopTimeoutFitsTheUnit: a stop_timeout the unit cannot hold (its watchdog, half its stop timeout) is a
// configuration error at load that names the field and the rule; one just below passes (with a guard that fits).
func TestStopTimeoutFitsTheUnit(t *testing.T) {
	_, err := Parse([]byte(minimal + "container: {stop_timeout: 30s}\nleader: {takeover_guard: 40s}\n"))
	for _, want := range []string{"container.stop_timeout", "30s", "must be below 30s", "WatchdogSec", "TimeoutStopSec"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("stop_timeout 30s: error %v does not say %q", err, want)
		}
	}
	if _, err := Parse([]byte(minimal + "container: {stop_timeout: 29s}\nleader: {takeover_guard: 40s}\n")); err != nil {
		t.Errorf("stop_timeout 29s must pass: %v", err)
	}
}

// TestUnitBoundsMatchTheShippedUnit keeps UnitWatchdog and UnitStopTimeout equal to the unit file's values.
func TestUnitBoundsMatchTheShippedUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("..", "..", "packaging", "systemd", "cl-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]time.Duration{"WatchdogSec": UnitWatchdog, "TimeoutStopSec": UnitStopTimeout} {
		m := regexp.MustCompile(`(?m)^` + key + `=(\S+)$`).FindSubmatch(unit)
		if m == nil {
			t.Fatalf("the unit sets no %s", key)
		}
		got, err := time.ParseDuration(string(m[1]))
		if err != nil || got != want {
			t.Errorf("the unit's %s=%s, the config's bound is %s", key, m[1], want)
		}
	}
}
