package standin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// HashLabel is the image label holding the hash of the stand-in's binary and Dockerfile (a release's ENV lines
// included).
const HashLabel = "cl-agent.standin.hash"

// Repository is the local repository of the stand-in image. BuildImage always tags the image
// Repository:sha-HASH as well, so removing a test's own tag never deletes an image other tests share.
const Repository = "standin-chainlink"

// UID and GID are the user the real node's image runs as, and the default of container.user.
const (
	UID = 14933
	GID = 14933
)

const (
	importPath   = "github.com/cl-agent/cl-agent/internal/standin/cmd/chainlink"
	goBuildBound = 5 * time.Minute
	dockerBound  = 2 * time.Minute
	dockerfile   = `FROM scratch
COPY chainlink /usr/local/bin/chainlink
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/home/chainlink
USER 14933:14933
EXPOSE 6688
ENTRYPOINT ["chainlink"]
CMD ["local", "node"]
`
)

// BuildBinary builds the stand-in (static: CGO_ENABLED=0, linux/amd64) into dir and returns its path.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "chainlink")
	pkg, pkgDir := importPath, ""
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		pkg, pkgDir = "./cmd/chainlink", filepath.Dir(file) // works from any working directory
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(ctx, goBuildBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (bound %s): %w\n%s", pkg, goBuildBound, err, output)
	}
	return out, nil
}

// Release is one release of the stand-in: the settings baked into its image as ENV lines (CL_STANDIN_VERSION,
// CL_STANDIN_NEVER_READY=1, CL_STANDIN_REFUSE_KEY, CL_STANDIN_MIGRATE_TO), so each gives an image of its own, with
// its own content hash and its own digest once pushed. The zero Release is BuildImage's image. The behaviour is
// the binary's (cmd/chainlink/release.go).
type Release struct {
	// Version is what `chainlink --version` prints ("chainlink version 2.11.0@standin", the real node's format)
	// and what the node names its database sessions with. "" is the binary's default, 0.0.0.
	Version string
	// NeverReady: `node start` connects, takes the lease, migrates, opens the key ring and creates the API user,
	// then never opens its HTTP port, as a real node whose start never returns: the agent's readiness probe
	// (GET /readyz answering 200) never passes, while the container runs and holds the lease.
	NeverReady bool
	// RefuseKey ("Section.Key", a path element may pass through an array of tables): `node … validate` and
	// `node … start` refuse a config.toml (or CL_CONFIG) that has it, as a release that removed the key refuses
	// it: exit 1, on stderr the real node's words for an unknown key ("Error running app: failed to decode config
	// TOML: " and go-toml's quote of the lines around it, "missing field" under the key).
	RefuseKey string
	// MigrateTo > 0: `node start` records migration MigrateTo in goose_migrations (the real node's table) before
	// it is ready, unless a version as high is applied there (a release with new migrations). Otherwise the
	// stand-in records its default migration, 1, as every ready real node has applied migrations.
	MigrateTo int64
}

// env is the release's Dockerfile ENV lines, in a fixed order (the same release, the same Dockerfile and hash);
// none for the zero Release.
func (r Release) env() string {
	var b strings.Builder
	if r.Version != "" {
		fmt.Fprintf(&b, "ENV CL_STANDIN_VERSION=%q\n", r.Version)
	}
	if r.NeverReady {
		b.WriteString("ENV CL_STANDIN_NEVER_READY=1\n")
	}
	if r.RefuseKey != "" {
		fmt.Fprintf(&b, "ENV CL_STANDIN_REFUSE_KEY=%q\n", r.RefuseKey)
	}
	if r.MigrateTo > 0 {
		fmt.Fprintf(&b, "ENV CL_STANDIN_MIGRATE_TO=%d\n", r.MigrateTo)
	}
	return b.String()
}

// BuildImage builds the stand-in image and tags it with every tag (e.g. "standin-chainlink:2.10.0",
// "127.0.0.1:5000/chainlink/chainlink:1.13.0"). When an image with the same binary already exists it is only
// tagged. Safe to call from parallel test processes. It is BuildRelease of the zero Release.
func BuildImage(ctx context.Context, tags ...string) error {
	return BuildRelease(ctx, Release{}, tags...)
}

// BuildRelease builds the image of release r and tags it with every tag, as BuildImage does. The content hash
// (HashLabel) covers the binary and the Dockerfile with r's ENV lines, so two releases never share an image and
// the same release built again is only tagged.
func BuildRelease(ctx context.Context, r Release, tags ...string) error {
	dir, err := os.MkdirTemp("", "standin-image-")
	if err != nil {
		return fmt.Errorf("build stand-in image: %w", err)
	}
	defer os.RemoveAll(dir)
	bin, err := BuildBinary(ctx, dir)
	if err != nil {
		return err
	}
	df := dockerfile + r.env()
	hash, err := contentHash(bin, df)
	if err != nil {
		return err
	}
	tags = append([]string{Repository + ":sha-" + hash}, tags...)
	// One build at a time on this machine, so parallel test binaries share one image instead of racing.
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "cl-agent-standin-build.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	id, err := docker(ctx, "image", "ls", "--quiet", "--no-trunc", "--filter", "label="+HashLabel+"="+hash)
	if err != nil {
		return err
	}
	if id = firstLine(id); id != "" {
		for _, tag := range tags {
			if _, err := docker(ctx, "tag", id, tag); err != nil {
				return err
			}
		}
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return fmt.Errorf("build stand-in image: %w", err)
	}
	args := []string{"build", "--quiet", "--label", HashLabel + "=" + hash}
	for _, tag := range tags {
		args = append(args, "--tag", tag)
	}
	if _, err := docker(ctx, append(args, dir)...); err != nil {
		return err
	}
	// Earlier builds whose tags moved to this one are untagged now: drop them (images in use are kept).
	_, _ = docker(ctx, "image", "prune", "--force", "--filter", "label="+HashLabel)
	return nil
}

// lockFile takes an exclusive flock on path, polling until ctx ends; the returned func releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("stand-in build lock: %w", err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("stand-in build lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("stand-in build lock %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// contentHash covers everything that ends up in the image.
func contentHash(bin, dockerfile string) (string, error) {
	f, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("hash stand-in binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash stand-in binary: %w", err)
	}
	h.Write([]byte(dockerfile))
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// docker runs the docker CLI with a deadline and returns its stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0") // the classic builder: nothing to pull, no buildx needed
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s (bound %s): %w: %s", strings.Join(args[:min(2, len(args))], " "), dockerBound, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}
