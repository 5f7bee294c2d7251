package leader

import (
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
)

func TestLockKey(t *testing.T) {
	t.Parallel()
	t.Run("Deterministic", func(t *testing.T) {
		if a, b := LockKey(0, "chainlink"), LockKey(0, "chainlink"); a != b {
			t.Fatalf("LockKey changed between calls: %d, %d", a, b)
		}
		// Pinned: every host and every agent version must derive the same key, or two leaders could coexist.
		if got, want := LockKey(0, "chainlink"), int64(-6429318851000630460); got != want {
			t.Fatalf("LockKey(0, \"chainlink\") = %d, want %d: the derivation changed", got, want)
		}
	})
	t.Run("DiffersByDatabase", func(t *testing.T) {
		seen := map[int64]string{}
		for _, db := range []string{"chainlink", "chainlink_test", "Chainlink", "node", "", "chainlink "} {
			k := LockKey(0, db)
			if prev, dup := seen[k]; dup {
				t.Fatalf("databases %q and %q share key %d", prev, db, k)
			}
			seen[k] = db
		}
	})
	t.Run("NeverTheNodeLockOrZero", func(t *testing.T) {
		for i := range 100000 {
			k := LockKey(0, "db"+string(rune('a'+i%26))+time.Duration(i).String())
			if k == 0 || k == config.NodeLockID1x {
				t.Fatalf("derived key %d", k)
			}
		}
	})
	t.Run("ConfiguredWins", func(t *testing.T) {
		if got := LockKey(42, "chainlink"); got != 42 {
			t.Fatalf("LockKey(42, …) = %d", got)
		}
	})
	t.Run("Tag", func(t *testing.T) {
		for _, tc := range []struct {
			key          int64
			class, objid uint32
		}{
			{1, 0, 1},
			{-1, 0xffffffff, 0xffffffff},
			{0x0123456789abcdef, 0x01234567, 0x89abcdef},
		} {
			if got := tagOf(tc.key); got.classid != tc.class || got.objid != tc.objid {
				t.Errorf("tagOf(%#x) = %#x/%#x, want %#x/%#x", tc.key, got.classid, got.objid, tc.class, tc.objid)
			}
		}
	})
}

func TestKeepalive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dead           time.Duration
		idle, interval time.Duration
		count          int
		bound          time.Duration
	}{
		{10 * time.Second, 4 * time.Second, 2 * time.Second, 3, 10 * time.Second}, // the default
		{2 * time.Second, time.Second, time.Second, 1, 2 * time.Second},
		{3 * time.Second, time.Second, time.Second, 2, 3 * time.Second},
		{5 * time.Second, 2 * time.Second, time.Second, 3, 5 * time.Second},
		{7 * time.Second, 4 * time.Second, time.Second, 3, 7 * time.Second},
		{60 * time.Second, 24 * time.Second, 12 * time.Second, 3, 60 * time.Second},
		{2500 * time.Millisecond, time.Second, time.Second, 2, 3 * time.Second}, // not whole seconds: < D + interval
		{4 * time.Second, time.Second, time.Second, 3, 4 * time.Second},
	} {
		k := keepaliveFor(tc.dead)
		if k.Idle != tc.idle || k.Interval != tc.interval || k.Count != tc.count || k.UserTimeout != tc.dead {
			t.Errorf("keepaliveFor(%s) = %+v, want idle %s interval %s count %d", tc.dead, k, tc.idle, tc.interval, tc.count)
		}
		if b := k.dropBound(); b != tc.bound || b < tc.dead || b >= tc.dead+k.Interval {
			t.Errorf("keepaliveFor(%s).dropBound() = %s, want %s", tc.dead, b, tc.bound)
		}
		// Without TCP_USER_TIMEOUT the probes alone must not drop a peer earlier than D.
		if without := k.Idle + time.Duration(k.Count)*k.Interval; without < tc.dead {
			t.Errorf("keepaliveFor(%s): idle + count × interval = %s < D", tc.dead, without)
		}
	}
}
