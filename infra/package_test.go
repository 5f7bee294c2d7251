package infra_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// packageTimeout bounds one `make package` run: a cold build of cl-agent with the AWS SDK and the Docker client.
const packageTimeout = 5 * time.Minute

func runPackage(t *testing.T, dist, version string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), packageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "packaging", "package.sh"))
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION="+version, "SOURCE_DATE_EPOCH=0")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("package.sh did not finish within %s:\n%s", packageTimeout, out)
	}
	return string(out), err
}

type archiveEntry struct {
	hdr  *tar.Header
	data []byte
}

func readArchive(t *testing.T, path string) map[string]archiveEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	entries := map[string]archiveEntry{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[hdr.Name] = archiveEntry{hdr, data}
	}
}

// TestPackage runs packaging/package.sh (make package) and checks what the user-data will install: an archive
// of a static linux/amd64 cl-agent that knows its version and the unit, with checksums that verify, built
// reproducibly.
func TestPackage(t *testing.T) {
	const version = "1.2.3-test"
	dist := t.TempDir()
	out, err := runPackage(t, dist, version)
	if err != nil {
		t.Fatalf("package.sh: %v\n%s", err, out)
	}
	archive := "cl-agent_" + version + "_linux_amd64.tar.gz"

	// SHA256SUMS verifies every file it lists, and lists the three the release is made of.
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not in sha256sum format", line)
		}
		data, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256Hex(data); got != sum {
			t.Errorf("SHA256SUMS says %s for %s, the file has %s", sum, name, got)
		}
		listed[name] = sum
	}
	for _, name := range []string{"cl-agent", "cl-agent.service", archive} {
		if listed[name] == "" {
			t.Errorf("SHA256SUMS does not list %s", name)
		}
	}
	if !strings.Contains(out, "AgentSHA256="+listed[archive]) {
		t.Errorf("package.sh does not print the AgentSHA256 to give the stack:\n%s", out)
	}

	// The archive holds exactly the binary and the unit, as the user-data extracts them.
	entries := readArchive(t, filepath.Join(dist, archive))
	if len(entries) != 2 {
		t.Errorf("archive entries: %d, want cl-agent and cl-agent.service", len(entries))
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "systemd", "cl-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(filepath.Join(dist, "cl-agent"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		data []byte
		mode int64
	}{"cl-agent": {bin, 0o755}, "cl-agent.service": {unit, 0o644}} {
		e, ok := entries[name]
		if !ok {
			t.Errorf("archive lacks %s", name)
			continue
		}
		if !bytes.Equal(e.data, want.data) || e.hdr.Mode != want.mode || e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("archive %s: mode %o uid %d gid %d mtime %v, same bytes %t", name, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime, bytes.Equal(e.data, want.data))
		}
	}

	// A static linux/amd64 executable: no interpreter, no shared libraries.
	ef, err := elf.Open(filepath.Join(dist, "cl-agent"))
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 || ef.OSABI != elf.ELFOSABI_NONE && ef.OSABI != elf.ELFOSABI_LINUX {
		t.Errorf("cl-agent is %v/%v, want linux x86_64", ef.Machine, ef.OSABI)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("cl-agent is dynamically linked (program header %v)", p.Type)
		}
	}

	// It reports the version the release was built with.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := exec.CommandContext(ctx, filepath.Join(dist, "cl-agent"), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), version) {
		t.Errorf("cl-agent version: %v %q, want it to print %s", err, v, version)
	}

	// Reproducible: a second build of the same sources and version gives the same archive.
	again := t.TempDir()
	if out, err := runPackage(t, again, version); err != nil {
		t.Fatalf("second package.sh run: %v\n%s", err, out)
	}
	second, err := os.ReadFile(filepath.Join(again, archive))
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256Hex(second); got != listed[archive] {
		t.Errorf("the archive is not reproducible: %s, then %s", listed[archive], got)
	}
}

func TestPackageRefusesAVersionThatCannotBeAFileName(t *testing.T) {
	out, err := runPackage(t, t.TempDir(), "1.0 beta")
	if err == nil || !strings.Contains(out, `VERSION "1.0 beta" may only hold`) {
		t.Fatalf("package.sh accepted VERSION \"1.0 beta\": %v\n%s", err, out)
	}
}
