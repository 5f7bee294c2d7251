package keyring

import (
	"context"
	"runtime/debug"
	"syscall"
	"testing"
)

// BenchmarkCheck is the cost of one Check at the node's default scrypt parameters (N=2^18, r=8, p=1) on a key ring
// row already read: time and bytes allocated per check, and the process's peak resident set (maxrss-MiB, a high
// water mark over the whole run, the seal's derivation included: it is the floor of the figure). The row comes from rowDB: a real query adds a round trip, nothing
// comparable to the derivation.
func BenchmarkCheck(b *testing.B) {
	raw := marshal(b, seal(b, right, DefaultN, DefaultR, DefaultP))
	debug.FreeOSMemory() // the seal's own derivation, out of the peak
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if v, err := Check(ctx, rowDB{raw}, wrong); err != nil || v != DoesNotOpen {
			b.Fatalf("Check = %s, %v", v, err)
		}
	}
	b.StopTimer()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MiB") // Linux: kilobytes
}
