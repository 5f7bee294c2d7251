package health

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cl-agent/cl-agent/agent/state"
)

// Limits of the host check: above them the check fails (the node's own advice: watch the chain client's and
// the node's disk and RAM). CPU is reported, never failed on: a busy CPU is not by itself a fault.
const (
	diskUsedLimit   = 0.90
	memoryUsedLimit = 0.95
)

// newHost checks the host's resources from /proc and statfs (no cgo): the used share of the file system of each of
// paths, of memory (MemAvailable), and of the CPUs since the previous run (since boot on the first).
func newHost(paths []string, interval, timeout time.Duration) Check {
	return &host{spec: spec{string(state.Host), interval, timeout}, paths: paths, proc: "/proc"}
}

type host struct {
	spec
	paths []string
	proc  string // /proc, or a fake one in tests

	mu   sync.Mutex
	prev cpuTimes
}

func (c *host) Run(ctx context.Context) Result {
	var samples []Sample
	var problems, reasons, figures []string // reasons: the problems without their figures
	for _, p := range c.paths {
		used, err := diskUsed(p)
		if err != nil {
			problems, reasons = append(problems, err.Error()), append(reasons, err.Error())
			continue
		}
		samples = append(samples, Sample{Metric: metricDiskUsed, Label: p, Value: used})
		figures = append(figures, fmt.Sprintf("disk %s %.0f%%", p, used*100))
		if used > diskUsedLimit {
			problems = append(problems, fmt.Sprintf("disk %s is %.0f%% full (limit %.0f%%)", p, used*100, diskUsedLimit*100))
			reasons = append(reasons, "disk "+p+" full")
		}
	}
	if mem, err := memoryUsed(c.proc); err != nil {
		problems, reasons = append(problems, err.Error()), append(reasons, err.Error())
	} else {
		samples = append(samples, Sample{Metric: metricMemoryUsed, Value: mem})
		figures = append(figures, fmt.Sprintf("memory %.0f%%", mem*100))
		if mem > memoryUsedLimit {
			problems = append(problems, fmt.Sprintf("memory is %.0f%% used (limit %.0f%%)", mem*100, memoryUsedLimit*100))
			reasons = append(reasons, "memory used")
		}
	}
	if cpu, err := c.cpuUsed(); err != nil {
		problems, reasons = append(problems, err.Error()), append(reasons, err.Error())
	} else {
		samples = append(samples, Sample{Metric: metricCPUUsed, Value: cpu})
		figures = append(figures, fmt.Sprintf("cpu %.0f%%", cpu*100))
	}
	if len(problems) > 0 {
		return failBecause(c.name, strings.Join(reasons, "; "), strings.Join(problems, "; "), samples...)
	}
	return pass(c.name, strings.Join(figures, ", "), samples...)
}

// diskUsed is the used share of the file system holding path, as df counts it: used / (used + available to
// unprivileged users).
func diskUsed(path string) (float64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	used := float64(st.Blocks - st.Bfree)
	avail := float64(st.Bavail)
	if used+avail == 0 {
		return 0, nil
	}
	return used / (used + avail), nil
}

// memoryUsed is (MemTotal - MemAvailable) / MemTotal from /proc/meminfo.
func memoryUsed(proc string) (float64, error) {
	data, err := os.ReadFile(proc + "/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read meminfo: %w", err)
	}
	return parseMeminfo(data)
}

func parseMeminfo(data []byte) (float64, error) {
	fields := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			fields[key] = v
		}
	}
	total, avail := fields["MemTotal"], fields["MemAvailable"]
	if total <= 0 {
		return 0, fmt.Errorf("meminfo has no MemTotal")
	}
	if _, ok := fields["MemAvailable"]; !ok {
		return 0, fmt.Errorf("meminfo has no MemAvailable (kernel older than 3.14)")
	}
	return (total - avail) / total, nil
}

// cpuTimes are the aggregate jiffies of /proc/stat's "cpu" line.
type cpuTimes struct{ busy, total float64 }

// cpuUsed is the busy share of all CPUs since the previous run.
func (c *host) cpuUsed() (float64, error) {
	data, err := os.ReadFile(c.proc + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	now, err := parseCPU(data)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	prev := c.prev
	c.prev = now
	c.mu.Unlock()
	dt := now.total - prev.total
	if dt <= 0 {
		return 0, nil
	}
	return (now.busy - prev.busy) / dt, nil
}

// parseCPU reads "cpu user nice system idle iowait irq softirq steal guest guest_nice"; idle and iowait are
// not busy; guest time is already counted in user and nice.
func parseCPU(data []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat does not start with the cpu line")
	}
	var t cpuTimes
	for i, s := range f[1:min(len(f), 9)] { // user .. steal
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, nil
}
