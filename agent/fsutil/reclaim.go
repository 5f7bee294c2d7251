package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ReclaimFromRoot gives back to owner everything under dir (dir included) that root owns, and returns how many
// entries it changed. It repairs a data directory that an older cl-agent unit let systemd re-own recursively to
// root at each start (StateDirectory= on the node's directory): the node, running as its own uid, could then no
// longer read what it had written. Only root's entries change; symbolic links are re-owned, never followed. A
// directory whose top is not root's is left alone and costs one stat.
func ReclaimFromRoot(dir string, owner Owner) (int, error) {
	if owner == NoOwner || owner.UID == 0 {
		return 0, nil
	}
	if top, err := os.Lstat(dir); err != nil || !ownedByRoot(top) {
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return 0, err
	}
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil || !ownedByRoot(info) {
			return err
		}
		if err := os.Lchown(path, owner.UID, owner.GID); err != nil {
			return fmt.Errorf("give %s back to %d:%d: %w", path, owner.UID, owner.GID, err)
		}
		n++
		return nil
	})
	return n, err
}

func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}
