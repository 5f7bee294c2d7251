package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPrepareNodeDir: the node's data directory is created or adopted when it is new, empty or already the
// node's; a non-empty directory of another uid (root's included, unless it is the one an older unit re-owned)
// is refused with nothing changed, where EnsureDir used to chown and chmod it.
func TestPrepareNodeDir(t *testing.T) {
	node, other := Owner{UID: 14933, GID: 14933}, Owner{UID: 4242, GID: 4242}
	cases := []struct {
		name        string
		setup       func(t *testing.T, dir string) // nil: dir does not exist
		reclaimRoot bool
		refused     string // "" accepted; else said by the error
	}{
		{"MissingIsCreated", nil, false, ""},
		{"EmptyOfAnotherUIDIsAdopted", func(t *testing.T, dir string) { mkdir(t, dir, other, 0o755) }, false, ""},
		{"EmptyOfRootIsAdopted", func(t *testing.T, dir string) { mkdir(t, dir, Owner{0, 0}, 0o755) }, false, ""},
		{"NodesOwnIsKept", func(t *testing.T, dir string) {
			mkdir(t, dir, node, 0o750)
			file(t, filepath.Join(dir, "log.jsonl"), node)
		}, false, ""},
		{"NonEmptyOfAnotherUIDIsRefused", func(t *testing.T, dir string) {
			mkdir(t, dir, other, 0o755)
			file(t, filepath.Join(dir, ".bashrc"), other)
		}, false, "is not empty and belongs to uid 4242, not to the node (uid 14933)"},
		{"NonEmptyOfRootIsRefused", func(t *testing.T, dir string) {
			mkdir(t, dir, Owner{0, 0}, 0o755)
			file(t, filepath.Join(dir, "passwd"), Owner{0, 0})
		}, false, "belongs to uid 0"},
		{"NonEmptyOfRootIsReclaimedWhereAnOlderUnitLeftIt", func(t *testing.T, dir string) {
			mkdir(t, dir, Owner{0, 0}, 0o755)
			file(t, filepath.Join(dir, "log.jsonl"), Owner{0, 0})
		}, true, ""},
		{"NonEmptyOfAnotherUIDIsRefusedEvenWithReclaim", func(t *testing.T, dir string) {
			mkdir(t, dir, other, 0o755)
			file(t, filepath.Join(dir, ".bashrc"), other)
		}, true, "belongs to uid 4242"},
		{"FileIsRefused", func(t *testing.T, dir string) { file(t, dir, other) }, false, "is not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "node")
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			before := snapshot(t, dir)
			_, err := PrepareNodeDir(dir, 0o700, node, tc.reclaimRoot)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				assertOwnerMode(t, dir, node, 0o700)
				entries, _ := os.ReadDir(dir)
				for _, e := range entries {
					assertOwnerMode(t, filepath.Join(dir, e.Name()), node, 0)
				}
				return
			}
			var nerr *NotOursError
			if !errors.As(err, &nerr) || nerr.ExitCode() != 2 {
				t.Fatalf("got %v (%T), want a *NotOursError", err, err)
			}
			for _, want := range []string{dir, tc.refused, "will not take it over", "container.data_dir"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("the directory changed: before %s, after %s", before, after)
			}
		})
	}
}

// TestPrepareNodeDirTellsHowToHandOver: the refusal gives the command that makes the directory the node's.
func TestPrepareNodeDirTellsHowToHandOver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	mkdir(t, dir, Owner{1000, 1000}, 0o755)
	file(t, filepath.Join(dir, "x"), Owner{1000, 1000})
	_, err := PrepareNodeDir(dir, 0o700, Owner{UID: 14933, GID: 14934}, false)
	if err == nil || !strings.Contains(err.Error(), "chown -R 14933:14934 "+dir) {
		t.Fatalf("error %v does not give the chown command", err)
	}
}

func TestPrepareNodeDirFollowsALinkToTheNodesDirectory(t *testing.T) {
	node := Owner{UID: 14933, GID: 14933}
	target := filepath.Join(t.TempDir(), "ebs")
	mkdir(t, target, node, 0o700)
	file(t, filepath.Join(target, "log.jsonl"), node)
	link := filepath.Join(t.TempDir(), "node")
	must(t, os.Symlink(target, link))
	if _, err := PrepareNodeDir(link, 0o700, node, false); err != nil {
		t.Fatal(err)
	}
}

func TestCheckNewOrEmptyDir(t *testing.T) {
	base := t.TempDir()
	full := filepath.Join(base, "full")
	mkdir(t, full, Owner{0, 0}, 0o755)
	file(t, filepath.Join(full, "keep-me"), Owner{0, 0})
	empty := filepath.Join(base, "empty")
	mkdir(t, empty, Owner{0, 0}, 0o755)
	plain := filepath.Join(base, "plain")
	file(t, plain, Owner{0, 0})
	for dir, refused := range map[string]string{
		filepath.Join(base, "missing"): "",
		empty:                          "",
		full:                           `is not empty (it holds "keep-me")`,
		plain:                          "is not a directory",
	} {
		err := CheckNewOrEmptyDir(dir, "choose a new directory")
		if refused == "" {
			if err != nil {
				t.Errorf("%s refused: %v", dir, err)
			}
			continue
		}
		var nerr *NotOursError
		if !errors.As(err, &nerr) || !strings.Contains(err.Error(), refused) || !strings.Contains(err.Error(), "choose a new directory") {
			t.Errorf("%s: got %v, want a refusal saying %q", dir, err, refused)
		}
	}
}

func mkdir(t *testing.T, dir string, o Owner, perm os.FileMode) {
	t.Helper()
	must(t, os.Mkdir(dir, perm))
	must(t, os.Chown(dir, o.UID, o.GID))
	must(t, os.Chmod(dir, perm))
}

func file(t *testing.T, path string, o Owner) {
	t.Helper()
	must(t, os.WriteFile(path, []byte("x"), 0o644))
	must(t, os.Chown(path, o.UID, o.GID))
}

// snapshot describes dir and its entries (name, owner, mode), "" when it does not exist.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		must(t, syscall.Lstat(path, &st))
		fmt.Fprintf(&b, "%s %d:%d %o\n", path, st.Uid, st.Gid, st.Mode)
		return nil
	})
	return b.String()
}

func assertOwnerMode(t *testing.T, path string, o Owner, perm os.FileMode) {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Stat(path, &st))
	if int(st.Uid) != o.UID || int(st.Gid) != o.GID {
		t.Errorf("%s is owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, o.UID, o.GID)
	}
	if perm != 0 && os.FileMode(st.Mode).Perm() != perm {
		t.Errorf("%s has mode %o, want %o", path, os.FileMode(st.Mode).Perm(), perm)
	}
}
