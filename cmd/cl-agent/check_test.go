package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// TestSecretsDirNote: check says whether container.secrets_dir is on tmpfs, and warns when it is not; a
// directory not created yet is judged by the nearest one above it.
func TestSecretsDirNote(t *testing.T) {
	mem := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(mem, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mem, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs at %s: %v", mem, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mem, syscall.MNT_DETACH) })
	disk := t.TempDir()
	if onTmpfs, err := fsutil.IsTmpfs(disk); err != nil || onTmpfs {
		t.Fatalf("the test needs a temporary directory on a disk: %s is on tmpfs (%v)", disk, err)
	}
	cases := []struct {
		name, dir string
		warn      bool
		says      []string
	}{
		{"OnTmpfs", mem, false, []string{mem + " is on tmpfs"}},
		{"NotCreatedYetOnTmpfs", filepath.Join(mem, "cl-agent", "node"), false, []string{"not created yet; judged by " + mem, "is on tmpfs"}},
		{"OnDisk", disk, true, []string{disk + " is not on tmpfs", "mount a tmpfs"}},
		{"NotCreatedYetOnDisk", filepath.Join(disk, "secrets"), true, []string{"judged by " + disk, "is not on tmpfs"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := secretsDirNote(tc.dir)
			if n.warn != tc.warn {
				t.Errorf("warn = %t, want %t: %s", n.warn, tc.warn, n.text)
			}
			for _, s := range append(tc.says, "container.secrets_dir") {
				if !strings.Contains(n.text, s) {
					t.Errorf("%q does not say %q", n.text, s)
				}
			}
		})
	}
}

// TestFormatNote: the 1.x format puts the database URL with its password in the container's environment; check
// says so and how to avoid it. Nothing is said for 2.x.
func TestFormatNote(t *testing.T) {
	n := formatNote(nodefiles.FormatEnv, "chainlink")
	for _, s := range []string{"DATABASE_URL", "database password", "docker inspect chainlink", "node.format toml", "2.x"} {
		if !strings.Contains(n.text, s) {
			t.Errorf("%q does not say %q", n.text, s)
		}
	}
	if n := formatNote(nodefiles.FormatTOML, "chainlink"); n.text != "" {
		t.Errorf("a note for 2.x: %q", n.text)
	}
}
