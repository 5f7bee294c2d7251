package health

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHostOnThisMachine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, _ := RunOnce(context.Background(), newHost([]string{"/", dir}, time.Second, 5*time.Second), nil)
	for _, want := range []struct{ metric, label string }{
		{metricDiskUsed, "/"}, {metricDiskUsed, dir}, {metricMemoryUsed, ""}, {metricCPUUsed, ""},
	} {
		v, ok := sampleValue(res, want.metric, want.label)
		if !ok || v < 0 || v > 1 || math.IsNaN(v) {
			t.Errorf("%s{%q} = %v (present %v); want a ratio in [0, 1]; detail %q", want.metric, want.label, v, ok, res.Detail)
		}
	}
	res, _ = RunOnce(context.Background(), newHost([]string{filepath.Join(dir, "missing")}, time.Second, 5*time.Second), nil)
	if res.OK || !contains(res.Detail, "statfs") {
		t.Errorf("a missing path: ok=%v %q; want a statfs failure", res.OK, res.Detail)
	}
}

func TestHostParsesProc(t *testing.T) {
	t.Parallel()
	proc := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(proc, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("meminfo", "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n")
	write("stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\n")
	c := &host{spec: spec{"host", time.Second, time.Second}, proc: proc}
	res := c.Run(context.Background())
	if v, _ := sampleValue(res, metricMemoryUsed, ""); v != 0.75 {
		t.Errorf("memory used = %v; want 0.75", v)
	}
	if v, _ := sampleValue(res, metricCPUUsed, ""); v != 0.2 {
		t.Errorf("cpu used since boot = %v; want 0.2", v)
	}
	// 100 more busy jiffies and 100 idle: 50% since the last run, whatever the history.
	write("stat", "cpu  150 0 150 850 50 0 0 0 0 0\n")
	res = c.Run(context.Background())
	if v, _ := sampleValue(res, metricCPUUsed, ""); v != 100.0/200.0 {
		t.Errorf("cpu used since the last run = %v; want 0.5", v)
	}
	if !res.OK {
		t.Errorf("host: %q", res.Detail)
	}
	write("meminfo", "MemTotal: 1000 kB\nMemAvailable: 10 kB\n")
	if res = c.Run(context.Background()); res.OK || !contains(res.Detail, "memory is 99% used") {
		t.Errorf("99%% memory: ok=%v %q; want a failure", res.OK, res.Detail)
	}
	write("meminfo", "MemTotal: 1000 kB\n")
	if res = c.Run(context.Background()); res.OK || !contains(res.Detail, "MemAvailable") {
		t.Errorf("no MemAvailable: ok=%v %q; want a failure naming it", res.OK, res.Detail)
	}
}
