package fsutil

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestReclaimFromRoot: a data directory that systemd re-owned to root goes back to the node's uid, entries of
// other owners stay as they are, and a link is re-owned without touching its target.
func TestReclaimFromRoot(t *testing.T) {
	node, other := Owner{UID: 14933, GID: 14933}, Owner{UID: 4242, GID: 4242}
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "node")
	must(t, os.MkdirAll(filepath.Join(dir, "logs"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "logs", "node.log"), []byte("x"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "theirs"), nil, 0o600))
	must(t, os.Chown(filepath.Join(dir, "theirs"), other.UID, other.GID))
	must(t, os.Symlink(outside, filepath.Join(dir, "link")))

	n, err := ReclaimFromRoot(dir, node)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 { // dir, logs, logs/node.log, link
		t.Errorf("reclaimed %d entries, want 4", n)
	}
	for path, want := range map[string]Owner{
		dir: node, filepath.Join(dir, "logs"): node, filepath.Join(dir, "logs", "node.log"): node,
		filepath.Join(dir, "link"): node, filepath.Join(dir, "theirs"): other, outside: {0, 0},
	} {
		var st syscall.Stat_t
		must(t, syscall.Lstat(path, &st))
		if int(st.Uid) != want.UID || int(st.Gid) != want.GID {
			t.Errorf("%s is owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, want.UID, want.GID)
		}
	}
	// Now the top is the node's: nothing more to do, and nothing walked.
	if n, err := ReclaimFromRoot(dir, node); err != nil || n != 0 {
		t.Errorf("second pass: %d, %v; want 0, nil", n, err)
	}
	if n, err := ReclaimFromRoot(filepath.Join(dir, "missing"), node); err != nil || n != 0 {
		t.Errorf("missing directory: %d, %v; want 0, nil", n, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
