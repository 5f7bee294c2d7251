package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/cl-agent/cl-agent/agent/exitcode"
)

// NotOursError is a directory the agent will not take over: it exists, holds something, and is not the node's
// (or is not a directory at all). Nothing in it was changed. It is a configuration problem: exit code 2.
type NotOursError struct {
	Dir    string
	Reason string // what is wrong, as a clause
	Fix    string // what the operator can do
}

func (e *NotOursError) Error() string {
	return fmt.Sprintf("%s %s: cl-agent will not take it over (nothing was changed); %s", e.Dir, e.Reason, e.Fix)
}

// ExitCode is 2: a retry cannot help, the configuration or the directory must change.
func (e *NotOursError) ExitCode() int { return exitcode.Config }

// PrepareNodeDir makes dir the node's data directory (mode perm, owned by owner) without taking over what
// belongs to someone else:
//   - missing: created;
//   - empty, or already owned by owner.UID: its owner and mode are set;
//   - owned by root and reclaimRoot: what root owns in it is given back to owner (ReclaimFromRoot; the repair of
//     the directory an older unit re-owned to root at every start), and the count of entries is returned;
//   - anything else (not empty and another uid's, or not a directory): a *NotOursError, and nothing changes.
//
// A symbolic link to a directory is judged by the directory it points at, as the node's mount will be.
func PrepareNodeDir(dir string, perm os.FileMode, owner Owner, reclaimRoot bool) (int, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, EnsureDir(dir, perm, owner)
	}
	if err != nil {
		return 0, fmt.Errorf("inspect the node's data directory: %w", err)
	}
	if !fi.IsDir() {
		return 0, &NotOursError{Dir: dir, Reason: "is not a directory",
			Fix: "point container.data_dir at a new or empty directory"}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if owner == NoOwner || !ok || int(st.Uid) == owner.UID {
		return 0, EnsureDir(dir, perm, owner)
	}
	n := 0
	if reclaimRoot && st.Uid == 0 {
		if n, err = ReclaimFromRoot(dir, owner); err != nil {
			return n, err
		}
		return n, EnsureDir(dir, perm, owner)
	}
	first, err := firstEntry(dir)
	if err != nil {
		return 0, fmt.Errorf("inspect the node's data directory: %w", err)
	}
	if first != "" {
		return 0, &NotOursError{Dir: dir,
			Reason: fmt.Sprintf("is not empty and belongs to uid %d, not to the node (uid %d)", st.Uid, owner.UID),
			Fix: fmt.Sprintf("point container.data_dir at a new or empty directory or, if it holds this node's own data, "+
				"give it to the node yourself (chown -R %d:%d %s)", owner.UID, owner.GID, dir)}
	}
	return 0, EnsureDir(dir, perm, owner)
}

// firstEntry returns one name in dir, "" when it is empty. It reads at most one name, so a huge directory costs
// no more than an empty one.
func firstEntry(dir string) (string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return names[0], nil
}

// CheckNewOrEmptyDir refuses an existing dir that holds anything, or a path that is not a directory, with a
// *NotOursError naming the first entry found. A missing dir, or an empty one, is fine. `cl-agent render --out`
// uses it before it chowns and chmods the directory for the node.
func CheckNewOrEmptyDir(dir, fix string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return &NotOursError{Dir: dir, Reason: "is not a directory", Fix: fix}
	}
	first, err := firstEntry(dir)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", dir, err)
	}
	if first != "" {
		return &NotOursError{Dir: dir, Reason: fmt.Sprintf("is not empty (it holds %q)", first), Fix: fix}
	}
	return nil
}
