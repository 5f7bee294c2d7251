package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

// ValidateFiles renders the node's files, writes them as the daemon does (0700 directory, 0400 files, owned by
// container.user) into a new directory under container.secrets_dir (the tmpfs), has v judge them (in production
// the node's own `validate` in a throwaway container of the image), and shreds them whatever the outcome.
//
// The node's refusal is a *nodefiles.RefusedError (exit 2, with the node's reason); a run that could not happen
// is an error worth retrying (exit 1). why, when not empty, says why nothing ran: the 1.x format has no validate,
// and the image is not on this host (ValidateFiles never pulls).
func ValidateFiles(ctx context.Context, c *config.Config, format nodefiles.Format, imageRef string,
	engine container.Engine, v nodefiles.Validator, render func() (*nodefiles.Rendered, error)) (detail, why string, err error) {
	if format != nodefiles.FormatTOML {
		return "", "the 1.x .env format: 1.x nodes have no `validate` command (they read their environment, and " +
			"ignore what they do not know); the agent's own checks at load are all there is", nil
	}
	present, err := engine.ImagePresent(ctx, imageRef)
	if err != nil {
		return "", "", err
	}
	if !present {
		return "", fmt.Sprintf("image %s is not on this host yet (check does not pull; the daemon pulls it when it "+
			"warms up): run check again after that", imageRef), nil
	}
	r, err := render()
	if err != nil {
		return "", "", err
	}
	owner := nodefiles.Owner(c.Container)
	if err := fsutil.EnsureDir(c.Container.SecretsDir, nodefiles.DirMode, owner); err != nil {
		r.Wipe()
		return "", "", err
	}
	dir, err := os.MkdirTemp(c.Container.SecretsDir, "validate-")
	if err != nil {
		r.Wipe()
		return "", "", fmt.Errorf("a directory for the node's files: %w", err)
	}
	defer func() {
		if serr := nodefiles.Shred(dir); serr != nil {
			err = errors.Join(err, fmt.Errorf("shred the node's files in %s: %w", dir, serr))
		} else if rerr := os.Remove(dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	if err := nodefiles.Write(dir, r, owner); err != nil { // wipes r
		return "", "", err
	}
	start := time.Now()
	if err := nodefiles.ValidateWithNode(ctx, v, nodefiles.WrittenFor(c, format, dir)); err != nil {
		return "", "", err
	}
	return fmt.Sprintf("the node's own validate accepts the rendered files (%s, %s)", imageRef,
		time.Since(start).Round(100*time.Millisecond)), "", nil
}

// validateForStart has the node's own validate judge the files a start of img with s would write, before this
// host can become active: a configuration the node refuses (an extra_toml key this release does not know) ends
// the agent with exit 2 and the node's reason while a warm peer keeps running, instead of a node that crash-loops
// once this host holds the lock. v nil: the production validator, the node's validate in a throwaway container.
func (h *Host) validateForStart(ctx context.Context, engine container.RunEngine, v nodefiles.Validator, img image.Image, s secrets.NodeSecrets) error {
	format, err := nodefiles.FormatFor(h.Config.Node.Format, img.Tag)
	if err != nil {
		return err
	}
	if v == nil {
		v = &container.NodeValidator{Engine: engine, Image: img.Ref()}
	}
	detail, why, err := ValidateFiles(ctx, h.Config, format, img.Ref(), engine, v,
		func() (*nodefiles.Rendered, error) { return h.Render(img, s) })
	switch {
	case err != nil:
		return err
	case why != "":
		h.Log.Info("the node's own validate did not run", zap.String("why", why))
	default:
		h.Log.Info(detail)
	}
	return nil
}
