package nodefiles

import (
	"fmt"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/fsutil"
)

// Modes of the secrets directory and the files in it.
const (
	DirMode  = 0o700
	FileMode = 0o400
)

// Owner is the node's uid:gid from container.user (validated at load).
func Owner(c config.Container) fsutil.Owner {
	uid, gid, _ := c.UIDGID()
	return fsutil.Owner{UID: uid, GID: gid}
}

// Write writes the rendered files into dir (0700, owned by the node) as 0400 files owned by the node,
// all or nothing, then wipes the rendered bytes. Files of the other format left from an earlier run are shredded
// first, so the directory holds exactly one generation.
func Write(dir string, r *Rendered, owner fsutil.Owner) error {
	defer r.Wipe()
	if err := fsutil.EnsureDir(dir, DirMode, owner); err != nil {
		return err
	}
	if err := fsutil.ShredAll(dir, AllFiles); err != nil {
		return fmt.Errorf("clear %s before writing: %w", dir, err)
	}
	if err := fsutil.WriteSet(dir, r.Files, FileMode, owner); err != nil {
		return fmt.Errorf("write the node's files to %s: %w", dir, err)
	}
	return nil
}

// Shred destroys every node file in dir.
func Shred(dir string) error {
	return fsutil.ShredAll(dir, AllFiles)
}
