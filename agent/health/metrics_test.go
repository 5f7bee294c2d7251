package health

import (
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
