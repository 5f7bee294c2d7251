package nodefiles

import (
	"context"
	"errors"
	"fmt"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
)

// The agent's checks mirror the node's rules it can know without the node: the password rules, the EIP-55 case of
// addresses, what extra_toml may not touch. The node's TOML decoding is strict (an unknown key in extra_toml is
// refused) and its schema changes from release to release, so the last word is the node's own
// `chainlink node -config … -secrets … validate`, run in the node's image on the files as written. A Validator
// is the hook for that; the production one is agent/container.NodeValidator, which `cl-agent check` and every
// warm-up of the daemon run (agent.ValidateFiles).

// ErrNodeRefused is wrapped by RefusedError.
var ErrNodeRefused = errors.New("the node's own validate refuses the rendered configuration")

// ErrNoVerdict is wrapped by a Validator's error when the node's validate could not run to a verdict (the engine
// failed, the run's bound passed, the process was killed): worth retrying, never a refusal of the configuration.
var ErrNoVerdict = errors.New("the node's validate gave no verdict")

// Written is what a Validator gets: the files as Write wrote them, and how to run the node on them.
type Written struct {
	Format Format
	// SecretsDir is the host directory holding config.toml and secrets.toml (0400, owned by the node's user);
	// mount it read-only at SecretsMount.
	SecretsDir string
	// ReadOnly are further host paths the node reads at the same path (node.database.sslrootcert).
	ReadOnly []string
	// User is the node's uid:gid (container.user).
	User string
	// Args follow the image's `chainlink` entrypoint: `node -config … -secrets … validate`.
	Args []string
}

// Validator runs the node's own validation on written files. It returns nil when the node accepts them, and
// otherwise an error carrying the node's reason (the node prints secrets as ***** or xxxxx; the agent's log
// redactor masks any value that slips through). It owns its deadline within ctx.
type Validator interface {
	ValidateNode(ctx context.Context, files Written) error
}

// ValidatorFunc makes a function a Validator.
type ValidatorFunc func(ctx context.Context, files Written) error

// ValidateNode calls f.
func (f ValidatorFunc) ValidateNode(ctx context.Context, files Written) error {
	return f(ctx, files)
}

// RefusedError is the node's refusal of the rendered files: a configuration error (exit 2), since the agent's
// own checks have passed the secrets.
type RefusedError struct {
	Err error
}

func (e *RefusedError) Error() string { return fmt.Sprintf("%v: %v", ErrNodeRefused, e.Err) }

// Unwrap gives both the sentinel and the validator's error.
func (e *RefusedError) Unwrap() []error { return []error{ErrNodeRefused, e.Err} }

// ExitCode is exitcode.Config (2): bad configuration, which systemd does not restart the agent for.
func (e *RefusedError) ExitCode() int { return exitcode.Config }

// ValidateArgs is the node's command line, after its entrypoint, that validates the files in SecretsMount.
func ValidateArgs() []string {
	return []string{"node", "-config", SecretsMount + "/" + ConfigFile, "-secrets", SecretsMount + "/" + SecretsFile, "validate"}
}

// WrittenFor describes the files of format f that Write wrote into dir for configuration c.
func WrittenFor(c *config.Config, f Format, dir string) Written {
	files := Written{Format: f, SecretsDir: dir, User: c.Container.User, Args: ValidateArgs()}
	if c.Node.Database.SSLRootCert != "" {
		files.ReadOnly = []string{c.Node.Database.SSLRootCert}
	}
	return files
}

// ValidateWithNode runs v on written files (see WrittenFor). A nil v, or the 1.x format (whose nodes have no
// validate), checks nothing. A refusal is a *RefusedError; the caller decides whether to shred the files. A
// validator cut short by ctx, or one that says it reached no verdict (ErrNoVerdict), is not a refusal.
func ValidateWithNode(ctx context.Context, v Validator, files Written) error {
	if v == nil || files.Format != FormatTOML {
		return nil
	}
	if files.Args == nil {
		files.Args = ValidateArgs()
	}
	err := v.ValidateNode(ctx, files)
	var refused *RefusedError
	switch {
	case err == nil, errors.As(err, &refused):
		return err
	case ctx.Err() != nil, errors.Is(err, ErrNoVerdict):
		return fmt.Errorf("validate the rendered files with the node: %w", err)
	}
	return &RefusedError{Err: err}
}
