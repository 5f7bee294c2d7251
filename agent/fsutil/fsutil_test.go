package fsutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mountTmpfs gives the test a small tmpfs of its own, so "disk full" is real.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs (the tests run as root): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteSetModesAndOwner(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	owner := Owner{UID: 14933, GID: 14933}
	files := []File{{".password", []byte("keystore-password-1234")}, {".api", []byte("a@b.c\npw\n")}}
	if err := WriteSet(dir, files, 0o400, owner); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o400 || st.Uid != 14933 || st.Gid != 14933 {
			t.Errorf("%s: mode %o owner %d:%d, want 0400 14933:14933", f.Name, fi.Mode().Perm(), st.Uid, st.Gid)
		}
		got, _ := os.ReadFile(filepath.Join(dir, f.Name))
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s holds %q", f.Name, got)
		}
	}
	if got := names(t, dir); len(got) != 2 {
		t.Errorf("directory holds %v, want only the two files", got)
	}
	if ok, err := IsTmpfs(dir); err != nil || !ok {
		t.Errorf("IsTmpfs(tmpfs) = %v, %v", ok, err)
	}
}

func TestWriteSetDiskFullLeavesNothing(t *testing.T) {
	dir := mountTmpfs(t, "16k")
	files := []File{{"small", []byte("fits")}, {"big", bytes.Repeat([]byte("x"), 64<<10)}}
	err := WriteSet(dir, files, 0o400, NoOwner)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("a failed set left %v behind", got)
	}
}

func TestWriteSetReadOnlyLeavesNothing(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	err := WriteSet(dir, []File{{"keep", []byte("new")}}, 0o400, NoOwner)
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("want EROFS, got %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "keep")); string(got) != "old" {
		t.Errorf("the old file was changed to %q", got)
	}
}

// TestWriteSetPermissionDenied runs WriteSet as an unprivileged user (this test binary, re-executed).
func TestWriteSetPermissionDenied(t *testing.T) {
	if dir := os.Getenv("FSUTIL_UNPRIVILEGED_DIR"); dir != "" {
		err := WriteSet(dir, []File{{"a", []byte("secret")}}, 0o400, NoOwner)
		if !errors.Is(err, os.ErrPermission) {
			t.Fatalf("want permission denied, got %v", err)
		}
		return
	}
	dir := t.TempDir() // owned by root, 0700 from t.TempDir's parent: nobody cannot write
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a private build directory: copy it where nobody can execute it.
	binDir, err := os.MkdirTemp("", "fsutil-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	bin, _ := os.ReadFile(os.Args[0])
	exe := filepath.Join(binDir, "fsutil.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil || os.Chmod(binDir, 0o755) != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestWriteSetPermissionDenied$")
	cmd.Env = append(os.Environ(), "FSUTIL_UNPRIVILEGED_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("left %v behind", got)
	}
}

func TestWriteAtomicReplacesAndSkipsUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image.json")
	if err := WriteAtomic(path, []byte("one"), 0o600, NoOwner); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if err := WriteAtomic(path, []byte("one"), 0o600, NoOwner); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("an unchanged write replaced the file")
	}
	if err := WriteAtomic(path, []byte("two"), 0o600, NoOwner); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "two" {
		t.Errorf("got %q", got)
	}
}

func TestShredOverwritesBeforeUnlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".password")
	secret := []byte("do-not-leave-me-around")
	if err := os.WriteFile(path, secret, 0o400); err != nil {
		t.Fatal(err)
	}
	// Hold a second name to the same inode, so the bytes can be read after Shred unlinks the first.
	link := filepath.Join(dir, "link")
	if err := os.Link(path, link); err != nil {
		t.Fatal(err)
	}
	if err := Shred(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("shredded file still exists: %v", err)
	}
	left, _ := os.ReadFile(link)
	if len(left) != len(secret) || bytes.Contains(left, secret) || strings.Trim(string(left), "\x00") != "" {
		t.Errorf("the inode still holds %q", left)
	}
	if err := Shred(path); err != nil {
		t.Errorf("shredding a missing file: %v", err)
	}
}

func TestShredAllRemovesLeftoverTemps(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".api", tempPrefix + ".api-123", "unrelated"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	if err := ShredAll(dir, []string{".api", ".password"}); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); len(got) != 1 || got[0] != "unrelated" {
		t.Errorf("left %v", got)
	}
}

func TestEnsureDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "node")
	if err := EnsureDir(dir, 0o700, Owner{UID: 14933, GID: 14933}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o700 || st.Uid != 14933 {
		t.Errorf("mode %o uid %d", fi.Mode().Perm(), st.Uid)
	}
}

// TestShredAllOfAMissingDirectory: a start that failed before the secrets directory was made leaves nothing to shred.
func TestShredAllOfAMissingDirectory(t *testing.T) {
	if err := ShredAll(filepath.Join(t.TempDir(), "never-made"), []string{"a", "b"}); err != nil {
		t.Fatalf("ShredAll of a missing directory = %v; want nil", err)
	}
}
