package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
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

// presentEngine answers ImagePresent; any other engine call panics on the nil embedded interface.
type presentEngine struct {
	container.Engine
	present bool
}

func (e presentEngine) ImagePresent(context.Context, string) (bool, error) { return e.present, nil }

// TestCheckNodeValidateSkips: the node-validate line says why it runs nothing, touching neither the engine nor the
// secrets: a 1.x image has no validate; an image not on the host yet is not pulled by check.
func TestCheckNodeValidateSkips(t *testing.T) {
	t.Parallel()
	render := func() (*nodefiles.Rendered, error) {
		t.Error("the files were rendered")
		return nil, errors.New("no render")
	}
	for _, tc := range []struct {
		name   string
		format nodefiles.Format
		engine container.Engine
		says   []string
	}{
		{"1xHasNoValidate", nodefiles.FormatEnv, nil, []string{"1.x", "no `validate` command"}},
		{"ImageNotPulledYet", nodefiles.FormatTOML, presentEngine{}, []string{"repo@sha256:", "not on this host yet", "does not pull"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			detail, why, err := agent.ValidateFiles(context.Background(), &config.Config{}, tc.format,
				"repo@sha256:"+strings.Repeat("a", 64), tc.engine, nil, render)
			if err != nil || detail != "" {
				t.Fatalf("detail %q, err %v; want a skip", detail, err)
			}
			for _, s := range tc.says {
				if !strings.Contains(why, s) {
					t.Errorf("%q does not say %q", why, s)
				}
			}
		})
	}
}

// The stand-in image cmd's tests run check against has no `validate`: their node-validate line gets
// standinValidator, which holds the files to what the daemon writes and the node would read.
func init() {
	checkValidator = func(container.RunEngine, string) nodefiles.Validator { return standinValidator{} }
}

// standinValidator accepts files written as the daemon writes them: a 0700 directory and 0400 files owned by the
// node's user, config.toml and secrets.toml that decode as TOML.
type standinValidator struct{}

func (standinValidator) ValidateNode(_ context.Context, w nodefiles.Written) error {
	uid, gid, err := (config.Container{User: w.User}).UIDGID()
	if err != nil {
		return err
	}
	check := func(path string, mode os.FileMode) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
			return fmt.Errorf("%s: mode %o owner %d:%d; want %o %d:%d", path, fi.Mode().Perm(), st.Uid, st.Gid, mode, uid, gid)
		}
		return nil
	}
	if err := check(w.SecretsDir, nodefiles.DirMode); err != nil {
		return err
	}
	for _, name := range []string{nodefiles.ConfigFile, nodefiles.SecretsFile} {
		path := filepath.Join(w.SecretsDir, name)
		if err := check(path, nodefiles.FileMode); err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var v map[string]any
		if err := toml.Unmarshal(raw, &v); err != nil || len(v) == 0 {
			return fmt.Errorf("%s does not decode: %v", name, err)
		}
	}
	return nil
}

// TestCheckNodeValidateWritesAndShreds: the files the node validates are in a new directory under
// container.secrets_dir, written as the daemon writes them; afterwards the directory is gone, accepted or refused,
// and a refusal is the validator's error.
func TestCheckNodeValidateWritesAndShreds(t *testing.T) {
	t.Parallel()
	c := &config.Config{Container: config.Container{User: "14933:14933", SecretsDir: filepath.Join(t.TempDir(), "node")}}
	render := func() (*nodefiles.Rendered, error) {
		return &nodefiles.Rendered{Format: nodefiles.FormatTOML, Files: []fsutil.File{
			{Name: nodefiles.ConfigFile, Data: []byte("RootDir = '/chainlink'\n")},
			{Name: nodefiles.SecretsFile, Data: []byte("[Password]\nKeystore = 'keystore-Password-0123456789'\n")},
		}}, nil
	}
	refusal := &nodefiles.RefusedError{Err: errors.New("NoSuchKey: missing field")}
	for _, tc := range []struct {
		name   string
		answer error
	}{{"Accepted", nil}, {"Refused", refusal}} {
		t.Run(tc.name, func(t *testing.T) {
			var seen nodefiles.Written
			validate := func(ctx context.Context, w nodefiles.Written) error {
				seen = w
				if err := (standinValidator{}).ValidateNode(ctx, w); err != nil {
					t.Errorf("the files are not as the daemon writes them: %v", err)
				}
				return tc.answer
			}
			detail, why, err := agent.ValidateFiles(context.Background(), c, nodefiles.FormatTOML, "repo@sha256:"+strings.Repeat("a", 64),
				presentEngine{present: true}, nodefiles.ValidatorFunc(validate), render)
			if why != "" || (err == nil) != (tc.answer == nil) || (err != nil && !errors.Is(err, nodefiles.ErrNodeRefused)) {
				t.Fatalf("detail %q, skip %q, err %v; want the validator's answer %v", detail, why, err, tc.answer)
			}
			if filepath.Dir(seen.SecretsDir) != c.Container.SecretsDir || seen.User != c.Container.User {
				t.Errorf("validated %+v; want a directory under %s as %s", seen, c.Container.SecretsDir, c.Container.User)
			}
			if _, err := os.Stat(seen.SecretsDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there after the check: %v", seen.SecretsDir, err)
			}
		})
	}
}
