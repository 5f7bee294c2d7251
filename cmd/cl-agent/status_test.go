package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/control"
)

// TestStatusShowsThePairsImage: the text status says the pair's recorded image, the highest release and the
// policy, the upgrade with its phase, candidate, writer, time and reason, and a failed read of the record.
func TestStatusShowsThePairsImage(t *testing.T) {
	t.Parallel()
	const (
		old  = "smartcontract/chainlink:2.19.0@sha256:aaaa"
		next = "smartcontract/chainlink:2.20.0@sha256:bbbb"
	)
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		image control.Image
		says  []string
		lacks []string
	}{
		{"NoUpgrade", control.Image{Pair: old, Highest: "2.19.0", Policy: "manual"},
			[]string{"pair:      " + old + "; highest release 2.19.0; image.upgrade manual\n"}, []string{"upgrade:", "cannot read"}},
		{"ANewPair", control.Image{Policy: "auto"},
			[]string{"pair:      no image recorded yet (a new pair); image.upgrade auto\n"}, []string{"upgrade:"}},
		{"UnderWay", control.Image{Pair: old, Highest: "2.19.0", Policy: "manual", Upgrade: &control.Upgrade{
			Phase: "starting", Candidate: next, Reason: "waiting for the new node to be ready", By: "i-0b", At: at}},
			[]string{"upgrade:   starting " + next + " by i-0b at 2025-03-01T12:00:00Z (",
				"\n           waiting for the new node to be ready\n"}, nil},
		{"Failed", control.Image{Pair: next, Highest: "2.20.0", Policy: "manual", Upgrade: &control.Upgrade{
			Phase: "failed", Candidate: next, Reason: "not ready within 10m0s after migrating", By: "i-0a", At: at, Finished: true}},
			[]string{"upgrade:   failed " + next, "not ready within 10m0s after migrating"}, nil},
		{"AFailedRead", control.Image{Pair: old, Policy: "manual", ReadError: "connection refused"},
			[]string{"pair:      " + old + "; image.upgrade manual\n",
				"           cannot read the pair's record: connection refused (shown: the last read)\n"}, nil},
		{"ADaemonThatReportsNone", control.Image{}, nil, []string{"pair:", "upgrade:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			printStatus(&out, control.Status{Role: "active", Since: at, Lock: control.Lock{Enabled: true, Held: true},
				Node: control.Node{Image: old}, Image: tc.image})
			for _, s := range tc.says {
				if !strings.Contains(out.String(), s) {
					t.Errorf("status lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.lacks {
				if strings.Contains(out.String(), s) {
					t.Errorf("status has %q:\n%s", s, out.String())
				}
			}
		})
	}
}
