package config

import (
	"path/filepath"
	"regexp"
	"strings"
)

// The agent creates, chowns, chmods and shreds in container.secrets_dir, container.data_dir, state_dir and the
// control socket's path. None of them may be a directory that belongs to the system or to other users: chowning
// /var/lib to the node's uid, or shredding in /tmp, would take over what is not the agent's.
var (
	// systemTrees are refused together with everything below them: the operating system's own files, memory
	// and kernel interfaces (read-only under the unit's ProtectSystem=strict anyway). /dev/shm/<dir> is the one
	// exception: a dedicated directory on that tmpfs is a fair place for secrets_dir.
	systemTrees = []string{"/etc", "/usr", "/bin", "/sbin", "/boot", "/dev", "/proc", "/sys"}
	// libDirRE matches /lib, /lib32, /lib64 and /libx32, refused with everything below them.
	libDirRE = regexp.MustCompile(`^lib(32|64|x32)?$`)
	// systemDirs are refused themselves; a dedicated subdirectory (/run/cl-agent, /var/lib/cl-agent) is fine.
	systemDirs = []string{"/", "/run", "/var", "/var/lib", "/var/run", "/tmp", "/home", "/root", "/dev/shm"}
)

// systemPath says why p (absolute) is not the agent's to take, or "" when it may be.
func systemPath(p string) string {
	p = filepath.Clean(p)
	for _, d := range systemDirs {
		if p == d {
			return p + " is a system directory; use a dedicated subdirectory such as " + filepath.Join(d, "cl-agent")
		}
	}
	top, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if libDirRE.MatchString(top) {
		return "/" + top + " holds the system's libraries; use a directory the agent owns, such as /var/lib/cl-agent"
	}
	if within(p, "/dev/shm") {
		return ""
	}
	for _, t := range systemTrees {
		if within(p, t) {
			return p + " is in " + t + ", which belongs to the system; use a directory the agent owns, such as /var/lib/cl-agent or /run/cl-agent"
		}
	}
	return ""
}

// paths refuses system paths for the four paths the agent writes into, and the nestings that would put the
// node's data, the agent's state or its socket on the shredded tmpfs of the secrets, or the secrets on the node's
// persistent disk.
func (v *validator) paths(c *Config) {
	k := c.Container
	owned := []struct{ field, path string }{
		{"container.secrets_dir", k.SecretsDir},
		{"container.data_dir", k.DataDir},
		{"state_dir", c.StateDir},
		{"control.socket", c.Control.Socket},
	}
	for _, o := range owned {
		v.absPath(o.field, o.path)
		if !filepath.IsAbs(o.path) {
			continue
		}
		if why := systemPath(o.path); why != "" {
			v.fail(o.field, o.path, detail(ErrInvalid, "must not be a system path: %s", why))
		}
	}
	if !filepath.IsAbs(k.SecretsDir) {
		return
	}
	if filepath.IsAbs(k.DataDir) && within(k.SecretsDir, k.DataDir) {
		v.fail("container.secrets_dir", k.SecretsDir, detail(ErrInvalid, "must not be inside container.data_dir (%s): that is persistent disk, and the node's data would hold its secrets", k.DataDir))
	}
	for i, o := range owned[1:] {
		equalDataDir := i == 0 && within(k.SecretsDir, o.path) // already refused above
		if filepath.IsAbs(o.path) && within(o.path, k.SecretsDir) && !equalDataDir {
			v.fail(o.field, o.path, detail(ErrInvalid, "must not be inside container.secrets_dir (%s): that tmpfs is lost at reboot and the agent shreds what it finds there", k.SecretsDir))
		}
	}
}

// OlderUnitDataDir is the node's data directory that an older cl-agent unit (StateDirectory=cl-agent/node)
// re-owned recursively to root at every start. Only there does the agent give root's entries back to the node
// (fsutil.PrepareNodeDir's reclaimRoot); anywhere else a non-empty directory that is not the node's is refused.
const OlderUnitDataDir = "/var/lib/cl-agent/node"
