package health

import (
	"maps"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func gather(t *testing.T, m *Metrics) []*dto.MetricFamily {
	t.Helper()
	mfs, err := m.gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// counterValue is the sum of a family's counter or gauge values.
func counterValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, mf := range gather(t, m) {
		if mf.GetName() == name {
			for _, mt := range mf.GetMetric() {
				sum += metricValue(mt)
			}
		}
	}
	return sum
}

// TestSetUpgrade: cl_agent_upgrade_phase has one series, the current phase and candidate (none with no upgrade);
// cl_agent_upgrade_in_progress follows it; cl_agent_upgrades_total counts an outcome once, when the phase changes
// to it, and not the outcome already recorded when the agent starts.
func TestSetUpgrade(t *testing.T) {
	t.Parallel()
	m := newMetrics(func() AgentState { return AgentState{} })
	outcomes := func() map[string]float64 { return seriesValues(t, m, metricUpgrades) }
	steps := []struct {
		name, phase, candidate string
		wantPhase              map[string]float64
		inProgress             float64
		wantOutcomes           map[string]float64
	}{
		{"AnOutcomeFromBeforeTheStartIsNotCounted", "done", "2.19.0", map[string]float64{"candidate=2.19.0,phase=done": 1}, 0,
			map[string]float64{"done": 0, "refused": 0, "rolled_back": 0, "failed": 0}},
		{"Requested", "requested", "2.20.0", map[string]float64{"candidate=2.20.0,phase=requested": 1}, 1,
			map[string]float64{"done": 0, "refused": 0, "rolled_back": 0, "failed": 0}},
		{"Validated", "validated", "2.20.0", map[string]float64{"candidate=2.20.0,phase=validated": 1}, 1, nil},
		{"Switching", "switching", "2.20.0", map[string]float64{"candidate=2.20.0,phase=switching": 1}, 1, nil},
		{"Starting", "starting", "2.20.0", map[string]float64{"candidate=2.20.0,phase=starting": 1}, 1, nil},
		{"DoneIsCounted", "done", "2.20.0", map[string]float64{"candidate=2.20.0,phase=done": 1}, 0,
			map[string]float64{"done": 1, "refused": 0, "rolled_back": 0, "failed": 0}},
		{"TheSamePhaseAgainIsNotCountedAgain", "done", "2.20.0", map[string]float64{"candidate=2.20.0,phase=done": 1}, 0,
			map[string]float64{"done": 1}},
		{"ARefusalOfAnotherCandidate", "refused", "2.18.0", map[string]float64{"candidate=2.18.0,phase=refused": 1}, 0,
			map[string]float64{"done": 1, "refused": 1}},
		{"NoUpgradeHasNoSeries", "", "", map[string]float64{}, 0, map[string]float64{"refused": 1}},
		{"RolledBack", "rolled_back", "2.21.0", map[string]float64{"candidate=2.21.0,phase=rolled_back": 1}, 0,
			map[string]float64{"rolled_back": 1, "failed": 0}},
		{"Failed", "failed", "2.22.0", map[string]float64{"candidate=2.22.0,phase=failed": 1}, 0,
			map[string]float64{"done": 1, "refused": 1, "rolled_back": 1, "failed": 1}},
	}
	for _, st := range steps {
		m.SetUpgrade(st.phase, st.candidate)
		if got := seriesValues(t, m, metricUpgradePhase); !maps.Equal(got, st.wantPhase) {
			t.Errorf("%s: %s = %v; want %v", st.name, metricUpgradePhase, got, st.wantPhase)
		}
		if got := counterValue(t, m, metricUpgrading); got != st.inProgress {
			t.Errorf("%s: %s = %v; want %v", st.name, metricUpgrading, got, st.inProgress)
		}
		got := outcomes()
		for outcome, want := range st.wantOutcomes {
			if got["outcome="+outcome] != want {
				t.Errorf("%s: %s{outcome=%q} = %v; want %v (all: %v)", st.name, metricUpgrades, outcome, got["outcome="+outcome], want, got)
			}
		}
	}
}
