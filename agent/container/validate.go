package container

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// LabelThrowaway marks a container the agent runs once and removes, its value saying what for (ThrowawayValidate).
// Such a container never carries LabelManaged and never has the node's name, so Fence, FenceAll and the supervisor,
// which act only on LabelManaged containers, never take it for the node.
const LabelThrowaway = "cl-agent.throwaway"

// ThrowawayValidate is LabelThrowaway's value on the node's `validate` run; its containers are named
// ValidatePrefix plus 12 random characters.
const (
	ThrowawayValidate = "node-validate"
	ValidatePrefix    = "cl-agent-validate-"
)

// DefaultValidateTimeout bounds one run of the node's validate, from create to exit (measured on v2.19.0 on
// 2 cores: about 3.5 s, most of it the node loading its configuration).
const DefaultValidateTimeout = 60 * time.Second

const (
	// validateRemoveBudget bounds the removal of the throwaway container, which runs even when ctx has ended.
	validateRemoveBudget = DefaultCallTimeout
	// validateTmpfs is the node's RootDir in the throwaway: validate opens its log file there (RootDir/log) and
	// refuses a directory it cannot narrow to 0700, so the tmpfs belongs to the node's uid. Nothing survives it.
	validateTmpfs = "size=16m,mode=0700,nosuid,nodev,noexec"
	// validateLogLines is how much of the node's output is read for its reason: the node prints its whole
	// effective configuration (secrets masked, ~300 lines) before its verdict, which comes last.
	validateLogLines = 80
	// MaxReasonBytes caps the node's reason carried in a validate error.
	MaxReasonBytes = 4 << 10
)

// RunEngine is an Engine that can also wait for a container to exit and read its output: what a run-once container
// needs. DockerEngine is one.
type RunEngine interface {
	Engine
	// WaitContainer waits until the container is no longer running and returns its exit code; bound limits the wait.
	WaitContainer(ctx context.Context, id string, bound time.Duration) (exitCode int, err error)
	// ContainerLogs returns the last tail lines of the container's stdout and stderr (at most 64 KiB).
	ContainerLogs(ctx context.Context, id string, tail int) (string, error)
}

var _ RunEngine = (*DockerEngine)(nil)

// NodeValidator is the production nodefiles.Validator: it runs the node's own `chainlink node -config … -secrets …
// validate` on the written files, in a throwaway container of the node's image, and removes the container
// afterwards whatever happened (also when ctx ends: the removal has a budget of its own).
//
// The throwaway runs as the node's user, with no network (v2.19.0's validate reads its files and checks them; it
// neither dials the database nor the chain), a read-only root file system and no capabilities. The secrets
// directory is mounted read-only at nodefiles.SecretsMount and every ReadOnly path at its own path, as Spec mounts
// them for the node; the node's RootDir is a small tmpfs of its own, never container.data_dir, so validate leaves
// nothing on the host. It carries LabelThrowaway, not LabelManaged.
//
// The node's exit 0 is nil. Another exit status from the node is a *nodefiles.RefusedError carrying the node's
// reason: the tail of its output from its verdict ("Invalid configuration: …", "Error running app: …"), at most
// MaxReasonBytes. The node prints secrets masked (xxxxx, *****); the validator adds none of its own. A run that could
// not happen (the engine, a missing image — the validator does not pull —, the bound, ctx) is a plain error naming
// the step, never a refusal.
type NodeValidator struct {
	Engine RunEngine
	// Image is the node's image as the supervisor runs it: repository@sha256:… (image.Image.Ref()).
	Image string
	// Timeout bounds one run from create to exit (default DefaultValidateTimeout).
	Timeout time.Duration
}

var _ nodefiles.Validator = (*NodeValidator)(nil)

// ValidateNode runs the node's validate on files; see NodeValidator.
func (v *NodeValidator) ValidateNode(ctx context.Context, files nodefiles.Written) (err error) {
	defer func() { // anything but the node's refusal is no verdict: worth retrying, never exit 2
		var refused *nodefiles.RefusedError
		if err != nil && !errors.As(err, &refused) {
			err = fmt.Errorf("%w: %w", nodefiles.ErrNoVerdict, err)
		}
	}()
	spec, err := v.spec(files)
	if err != nil {
		return err
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = DefaultValidateTimeout
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// bounded names the run's own bound when it, not the caller, ended a step.
	bounded := func(err error) error {
		if runCtx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("node validate (%s) did not finish within %s: %w", v.Image, timeout, err)
		}
		return fmt.Errorf("node validate (%s): %w", v.Image, err)
	}

	id, err := v.Engine.CreateContainer(runCtx, spec)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("%w (the image must be on this host: the validator does not pull)", err)
		}
		return bounded(err)
	}
	defer func() {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), validateRemoveBudget)
		defer cancel()
		if rerr := v.Engine.RemoveContainer(rmCtx, id); rerr != nil {
			err = errors.Join(err, fmt.Errorf("node validate: remove the throwaway container: %w", rerr))
		}
	}()
	if err := v.Engine.StartContainer(runCtx, id); err != nil {
		return bounded(err)
	}
	code, err := v.Engine.WaitContainer(runCtx, id, timeout)
	if err != nil {
		return bounded(err)
	}
	if code == 0 {
		return nil
	}
	out, err := v.Engine.ContainerLogs(ctx, id, validateLogLines)
	if err != nil {
		return fmt.Errorf("node validate (%s) exited %d; its output cannot be read: %w", v.Image, code, err)
	}
	reason := fmt.Errorf("`chainlink %s` (%s) exited %d: %s", strings.Join(spec.Config.Cmd, " "), v.Image, code, NodeReason(out))
	if code > 125 { // 126, 127: the command could not run; 128+n: killed by signal n (137: SIGKILL, OOM)
		return fmt.Errorf("node validate could not run to its verdict: %w", reason)
	}
	return &nodefiles.RefusedError{Err: reason}
}

// spec is the throwaway container that runs validate on files.
func (v *NodeValidator) spec(files nodefiles.Written) (ContainerSpec, error) {
	switch {
	case v.Engine == nil:
		return ContainerSpec{}, errors.New("node validate: no Docker engine")
	case v.Image == "":
		return ContainerSpec{}, errors.New("node validate: no image")
	case !filepath.IsAbs(files.SecretsDir):
		return ContainerSpec{}, fmt.Errorf("node validate: the secrets directory %q is not an absolute path", files.SecretsDir)
	}
	uid, gid, err := numericUser(files.User)
	if err != nil {
		return ContainerSpec{}, err
	}
	args := files.Args
	if args == nil {
		args = nodefiles.ValidateArgs()
	}
	mounts := []mount.Mount{{Type: mount.TypeBind, Source: files.SecretsDir, Target: nodefiles.SecretsMount, ReadOnly: true}}
	for _, p := range files.ReadOnly {
		if !filepath.IsAbs(p) {
			return ContainerSpec{}, fmt.Errorf("node validate: read-only path %q is not absolute", p)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: p, Target: p, ReadOnly: true})
	}
	name := ValidatePrefix + strings.ToLower(rand.Text()[:12]) // base32: distinct runs never share a name
	return ContainerSpec{
		Name: name,
		Config: &container.Config{
			User:   files.User,
			Cmd:    args,
			Image:  v.Image,
			Labels: map[string]string{LabelThrowaway: ThrowawayValidate, LabelImage: v.Image},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    "none",
			Mounts:         mounts,
			Tmpfs:          map[string]string{nodefiles.DataMount: fmt.Sprintf("%s,uid=%d,gid=%d", validateTmpfs, uid, gid)},
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			// The engine's own log, whatever the host's default driver (awslogs cannot be read back on every
			// engine): ContainerLogs reads the reason from it, and it goes with the container.
			LogConfig:     container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1m"}},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		},
	}, nil
}

// numericUser reads container.user's uid:gid (config validates it at load; Written may come from elsewhere).
func numericUser(user string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(user, ":")
	uid, uerr := strconv.Atoi(u)
	gid, gerr := strconv.Atoi(g)
	if !ok || uerr != nil || gerr != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("node validate: user %q is not a numeric uid:gid", user)
	}
	return uid, gid, nil
}

// verdicts start the node's reason in its output: a configuration that decodes but breaks a rule, and an error
// before that (a file that does not decode, an unknown key, a file it cannot read).
var verdicts = []string{"Invalid configuration", "Error running app"}

// NodeReason is the node's reason in the output of its validate: from the last verdict line on, or the output's
// tail when there is none; at most MaxReasonBytes, white space at either end trimmed, and the values of the files'
// lines it quotes masked (see maskQuoted).
func NodeReason(out string) string {
	out = maskQuoted(strings.TrimSpace(out))
	at := -1
	for _, v := range verdicts {
		at = max(at, strings.LastIndex(out, v))
	}
	switch {
	case at >= 0:
		out = out[at:]
		if len(out) > MaxReasonBytes {
			out = validPrefix(out[:MaxReasonBytes]) + " …"
		}
	case len(out) > MaxReasonBytes:
		out = "… " + validSuffix(out[len(out)-MaxReasonBytes:])
	}
	return strings.TrimSpace(out)
}

// validPrefix and validSuffix drop a rune cut in half at the end or the start of s.
func validPrefix(s string) string {
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func validSuffix(s string) string {
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[1:]
	}
	return s
}

var (
	// quotedLine is a line of a file the node quotes around a decoding error ("14| NoSuchKey = true"); pointerLine
	// marks the line above it as the one at fault (" | ~~~~~~~~~ missing field").
	quotedLine  = regexp.MustCompile(`^((?:.*TOML: )?\s*\d+\|\s?)(.*)$`) // the first follows "failed to decode … TOML: "
	pointerLine = regexp.MustCompile(`^\s*\|\s*~`)
	tableLine   = regexp.MustCompile(`^\s*\[[^=]*\]\s*(#.*)?$`)
)

// maskQuoted masks the values of the file lines the node quotes around a TOML decoding error: unlike its other
// messages, that context is printed verbatim, secrets.toml's passwords and database URL included (v2.19.0:
// "failed to decode secrets TOML: 2| URL = 'postgresql://…'"), and config.toml's chain URLs may carry a provider's
// key. Keys and table headers stay, so the reason still names what is wrong; the line at fault keeps its value
// too, except in secrets.toml, where every value is masked.
func maskQuoted(out string) string {
	lines := strings.Split(out, "\n")
	secretsFile := strings.Contains(out, "secrets TOML")
	for i, l := range lines {
		m := quotedLine.FindStringSubmatch(l)
		if m == nil || strings.TrimSpace(m[2]) == "" || tableLine.MatchString(m[2]) {
			continue
		}
		if !secretsFile && i+1 < len(lines) && pointerLine.MatchString(lines[i+1]) {
			continue // the line at fault in config.toml: extra_toml's own, which holds no secret
		}
		if key, _, ok := strings.Cut(m[2], "="); ok {
			lines[i] = m[1] + key + "= *****"
		} else {
			lines[i] = m[1] + "*****"
		}
	}
	return strings.Join(lines, "\n")
}
