// Package fsutil writes files that must never be seen half-written, and destroys files that held secrets.
//
// WriteAtomic and WriteSet follow one recipe: a temporary file in the destination directory (created 0600, so a
// secret is never readable by others even for a moment), write, fsync, chown, chmod, close, rename over the
// destination, fsync the directory. Any error removes (shreds) what was written, so a failure (disk full,
// permission denied) leaves no partial file behind. Shred overwrites a file with zeros, fsyncs and unlinks it.
package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// tempPrefix marks the agent's temporary files, so ShredDir can find leftovers of a crash.
const tempPrefix = ".cl-agent-tmp-"

// Owner is a file's uid and gid. Use NoOwner to leave ownership as the process creates it.
type Owner struct{ UID, GID int }

// NoOwner keeps the creating process's ownership.
var NoOwner = Owner{UID: -1, GID: -1}

// File is one file of a set: its name inside the directory and its bytes.
type File struct {
	Name string
	Data []byte
}

// WriteAtomic writes data to path with perm and owner, atomically. When the file already holds exactly these
// bytes, mode and owner, it is left alone.
func WriteAtomic(path string, data []byte, perm os.FileMode, owner Owner) error {
	if unchanged(path, data, perm, owner) {
		return nil
	}
	tmp, err := writeTemp(filepath.Dir(path), filepath.Base(path), data, perm, owner)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = Shred(tmp)
		return fmt.Errorf("rename %s into place: %w", filepath.Base(path), err)
	}
	return syncDir(filepath.Dir(path))
}

// WriteSet writes every file into dir, all or nothing: each goes to a temporary file first, and only when all
// are written are they renamed into place. When anything fails, every file of the set that was written is
// shredded, including ones already renamed.
func WriteSet(dir string, files []File, perm os.FileMode, owner Owner) error {
	temps := make([]string, 0, len(files))
	cleanup := func() {
		for _, t := range temps {
			_ = Shred(t)
		}
	}
	for _, f := range files {
		if f.Name != filepath.Base(f.Name) || f.Name == "." || f.Name == ".." {
			cleanup()
			return fmt.Errorf("write %q: a file name without a directory is required", f.Name)
		}
		tmp, err := writeTemp(dir, f.Name, f.Data, perm, owner)
		if err != nil {
			cleanup()
			return err
		}
		temps = append(temps, tmp)
	}
	for i, f := range files {
		if err := os.Rename(temps[i], filepath.Join(dir, f.Name)); err != nil {
			for _, done := range files[:i] {
				_ = Shred(filepath.Join(dir, done.Name))
			}
			temps = temps[i:]
			cleanup()
			return fmt.Errorf("rename %s into place: %w", f.Name, err)
		}
	}
	return syncDir(dir)
}

// writeTemp creates a 0600 temporary file beside name, writes and syncs it, then sets owner and perm.
func writeTemp(dir, name string, data []byte, perm os.FileMode, owner Owner) (_ string, err error) {
	f, err := os.CreateTemp(dir, tempPrefix+name+"-")
	if err != nil {
		return "", fmt.Errorf("create a temporary file for %s in %s: %w", name, dir, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = Shred(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("fsync %s: %w", name, err)
	}
	if owner != NoOwner {
		if err = f.Chown(owner.UID, owner.GID); err != nil {
			return "", fmt.Errorf("chown %s to %d:%d: %w", name, owner.UID, owner.GID, err)
		}
	}
	if err = f.Chmod(perm); err != nil {
		return "", fmt.Errorf("chmod %s to %o: %w", name, perm, err)
	}
	if err = f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", name, err)
	}
	return tmp, nil
}

func unchanged(path string, data []byte, perm os.FileMode, owner Owner) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != perm || fi.Size() != int64(len(data)) {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && owner != NoOwner && (int(st.Uid) != owner.UID || int(st.Gid) != owner.GID) {
		return false
	}
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, data)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to fsync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Shred overwrites the file at path with zeros, fsyncs it and unlinks it. A missing file is not an error.
// On tmpfs this destroys the bytes; on a journaling or copy-on-write disk it is best effort, which is why
// secrets belong on tmpfs.
func Shred(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Not writable (e.g. 0400 and we are not root): unlinking still removes the name.
		if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return fmt.Errorf("shred %s: %w", path, err)
		}
		return nil
	}
	// Unlink even when the overwrite fails (a full disk): the name must go either way.
	var overwriteErr error
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		if _, err := io.CopyN(f, zeroReader{}, fi.Size()); err != nil {
			overwriteErr = fmt.Errorf("overwrite %s: %w", path, err)
		} else if err := f.Sync(); err != nil {
			overwriteErr = fmt.Errorf("fsync %s: %w", path, err)
		}
	}
	_ = f.Close()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return errors.Join(overwriteErr, fmt.Errorf("unlink %s: %w", path, err))
	}
	return overwriteErr
}

// ShredAll shreds the named files in dir and any temporary file the agent left there; it reports every failure. A
// dir that does not exist holds nothing to shred.
func ShredAll(dir string, names []string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil // no directory, no files: nothing to shred
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, Shred(filepath.Join(dir, n)))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			errs = append(errs, Shred(filepath.Join(dir, e.Name())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return syncDir(dir)
}

// EnsureDir creates dir (and parents) and sets its mode and owner, so a 0700 secrets directory belongs to the
// node's uid and nobody else can list it.
func EnsureDir(dir string, perm os.FileMode, owner Owner) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	if owner != NoOwner {
		if err := os.Chown(dir, owner.UID, owner.GID); err != nil {
			return fmt.Errorf("chown directory %s to %d:%d: %w", dir, owner.UID, owner.GID, err)
		}
	}
	if err := os.Chmod(dir, perm); err != nil {
		return fmt.Errorf("chmod directory %s to %o: %w", dir, perm, err)
	}
	return nil
}

// IsTmpfs reports whether dir lives on tmpfs or ramfs (memory that never reaches a disk).
func IsTmpfs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
