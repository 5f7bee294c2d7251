package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/logging"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

// Host is what every command and the daemon start from: the validated configuration, a logger whose output is
// scrubbed of secrets, and, once learned, the host's identity and AWS configuration.
type Host struct {
	Config   *config.Config
	Log      *zap.Logger
	Identity identity.Identity
	AWS      aws.Config
	// OnSecretFetch is told the outcome and duration of every fetch of the secrets (metrics). Nil: nobody.
	OnSecretFetch func(err error, took time.Duration)

	secretsAPI secrets.API // built by Learn; every fetch (restart, rotation poll) reuses it
}

// Open loads the configuration at path and builds the logger writing JSON to logOut.
func Open(path string, logOut io.Writer) (*Host, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return &Host{Config: cfg, Log: logging.New(logOut, cfg.LogLevel)}, nil
}

// Learn asks IMDS who this host is (bounded by aws.imds_timeout) and prepares the AWS SDK configuration for its
// region. Credentials come from the SDK's default chain: the instance role in production.
func (h *Host) Learn(ctx context.Context) error {
	id, warning, err := identity.Resolve(ctx, identity.NewIMDSClient(h.Config.AWS.IMDSEndpoint), h.Config.Instance, h.Config.AWS.IMDSTimeout)
	if err != nil {
		return err
	}
	if warning != nil {
		h.Log.Warn("identity from configuration only", zap.Error(warning))
	}
	h.Identity = id
	h.Log = h.Log.With(zap.String("instance_id", id.InstanceID))
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(id.Region)}
	if h.Config.AWS.IMDSEndpoint != "" {
		opts = append(opts, awsconfig.WithEC2IMDSEndpoint(h.Config.AWS.IMDSEndpoint))
	}
	lctx, cancel := context.WithTimeout(ctx, h.Config.AWS.CallTimeout)
	defer cancel()
	h.AWS, err = awsconfig.LoadDefaultConfig(lctx, opts...)
	if err != nil {
		return fmt.Errorf("load the AWS SDK configuration: %w", err)
	}
	c := h.Config.AWS
	h.secretsAPI = secrets.NewClient(h.AWS, c.EndpointURL, c.MaxAttempts, c.CallTimeout/time.Duration(c.MaxAttempts))
	return nil
}

// FetchSecrets gets and checks the node's three secrets and registers their values with the log redactor. Learn
// must have run.
func (h *Host) FetchSecrets(ctx context.Context) (secrets.NodeSecrets, error) {
	if h.secretsAPI == nil {
		return secrets.NodeSecrets{}, errors.New("fetch secrets: the host's identity and region are not learned yet")
	}
	start := time.Now()
	s, err := secrets.Fetch(ctx, h.secretsAPI, h.Config.Secrets, h.Config.Node.APIEmail, h.Config.AWS.CallTimeout)
	if h.OnSecretFetch != nil {
		h.OnSecretFetch(err, time.Since(start))
	}
	if err != nil {
		return secrets.NodeSecrets{}, err
	}
	logging.Register(s.Forms()...)
	h.Log.Info("secrets fetched and checked", zap.Duration("took", time.Since(start)),
		zap.String("database_password_version", s.DatabasePassword.VersionID),
		zap.String("api_password_version", s.APIPassword.VersionID),
		zap.String("keystore_password_version", s.KeystorePassword.VersionID))
	return s, nil
}

// ResolveImage picks the image the node runs, pinned by digest, falling back to the last good choice in
// state_dir when the source cannot be reached.
func (h *Host) ResolveImage(ctx context.Context) (image.Image, error) {
	c := h.Config.Image
	return image.Resolve(ctx, image.Options{
		Repository: c.Repository, Tag: c.Tag, Major: c.Major, HubURL: c.HubURL,
		StateDir: h.Config.StateDir, Logger: h.Log,
	})
}

// ImageForFormat returns just enough of the image to choose the node's format without the network when it can:
// nothing when node.format is explicit, the pinned tag when image.tag is set, else a full resolution.
func (h *Host) ImageForFormat(ctx context.Context) (image.Image, error) {
	switch {
	case h.Config.Node.Format != "auto":
		return image.Image{}, nil
	case h.Config.Image.Tag != "":
		return image.Image{Repository: h.Config.Image.Repository, Tag: h.Config.Image.Tag}, nil
	}
	return h.ResolveImage(ctx)
}

// Render fetches nothing: it renders the node's files for img from secrets already held.
func (h *Host) Render(img image.Image, s secrets.NodeSecrets) (*nodefiles.Rendered, error) {
	format, err := nodefiles.FormatFor(h.Config.Node.Format, img.Tag)
	if err != nil {
		return nil, err
	}
	return nodefiles.Render(h.Config, h.Identity, s, format)
}

// WarnIfNotTmpfs says so when the secrets directory is on a disk, where shredding is only best effort.
func (h *Host) WarnIfNotTmpfs(dir string) {
	if err := fsutil.EnsureDir(dir, nodefiles.DirMode, nodefiles.Owner(h.Config.Container)); err != nil {
		h.Log.Warn("cannot prepare the secrets directory", zap.String("dir", dir), zap.Error(err))
		return
	}
	if ok, err := fsutil.IsTmpfs(dir); err == nil && !ok {
		h.Log.Warn("the secrets directory is not on tmpfs: the node's secrets touch a disk while it starts",
			zap.String("dir", dir))
	}
}

// Warm is the production warm-up of a standby, once its secrets are fetched and the pair's record read: choose
// the image (PairImage), pull it, and have the node's own validate judge the files a start would write
// (validateForStart), so a configuration the node refuses ends the agent here, not in a crash loop after a
// takeover.
func (h *Host) Warm(engine container.RunEngine) func(ctx context.Context, s secrets.NodeSecrets, rec pair.Record) (image.Image, error) {
	return func(ctx context.Context, s secrets.NodeSecrets, rec pair.Record) (image.Image, error) {
		img, err := h.PairImage(ctx, rec)
		if err != nil {
			return image.Image{}, err
		}
		if err := h.ValidateCandidate(engine)(ctx, img, s); err != nil {
			return image.Image{}, err
		}
		return img, nil
	}
}

// PairImage is the image this host warms up on: the pair's recorded image (its digest, from image.repository:
// Local), or — for the first host of a new pair —
// the one it resolves (the pinned tag or the newest stable release). A pinned image.tag other than the pair's is
// an upgrade the active asks for (agent/daemon), not something a warm-up or a failover does on its own; but one
// older than the highest release that ran against the database is refused here (exit 5).
func (h *Host) PairImage(ctx context.Context, rec pair.Record) (image.Image, error) {
	if !rec.Exists {
		return h.ResolveImage(ctx)
	}
	c := h.Config.Image
	if c.Tag != "" && c.Tag != rec.Image.Tag {
		if err := pair.CheckDowngrade(rec.Highest, image.Image{Repository: c.Repository, Tag: c.Tag}); err != nil {
			return image.Image{}, fmt.Errorf("image.tag: %w", err)
		}
		h.Log.Info("image.tag differs from the pair's image: this host warms up on the pair's; the active asks for the "+
			"upgrade to the pinned tag", zap.String("pinned", c.Tag), zap.String("pair", rec.Image.String()))
	}
	return h.Local(rec.Image), nil
}

// Local is img pulled from this host's image.repository: the pair's image is its digest, and a host may pull it
// from a mirror of the repository that recorded it (a pull-through cache, a private registry). A digest the
// configured repository does not have fails the pull, saying so.
func (h *Host) Local(img image.Image) image.Image {
	if repo := h.Config.Image.Repository; repo != img.Repository {
		h.Log.Warn("image.repository differs from the repository the pair's image was recorded from: this host pulls "+
			"the same digest from image.repository", zap.String("configured", repo), zap.String("recorded", img.String()))
		img.Repository = repo
	}
	return img
}

// ValidateCandidate pulls img and has the node's own validate (of img) judge the files a start with s would write:
// the warm-up's check, and the standby's before an upgrade. A refusal is a *nodefiles.RefusedError (exit 2).
func (h *Host) ValidateCandidate(engine container.RunEngine) func(ctx context.Context, img image.Image, s secrets.NodeSecrets) error {
	return func(ctx context.Context, img image.Image, s secrets.NodeSecrets) error {
		if err := h.Pull(engine)(ctx, img); err != nil {
			return err
		}
		return h.validateForStart(ctx, engine, nil, img, s)
	}
}

// Pull makes sure img is on this host, within the pull's bounds.
func (h *Host) Pull(engine container.RunEngine) func(ctx context.Context, img image.Image) error {
	return func(ctx context.Context, img image.Image) error {
		return container.EnsureImage(ctx, engine, img.Ref(), container.DefaultPullInactivity, container.DefaultPullTimeout, h.Log)
	}
}

// ResolveTarget resolves an upgrade's target afresh: tag, else the pinned image.tag, else the newest stable release
// within image.major, by digest. Unlike ResolveImage it never falls back to the last good choice: an upgrade to
// what the registry said some time ago is no upgrade.
func (h *Host) ResolveTarget(ctx context.Context, tag string) (image.Image, error) {
	c := h.Config.Image
	if tag == "" {
		tag = c.Tag
	}
	major := c.Major
	if tag != "" {
		major = 0
	}
	return image.Resolve(ctx, image.Options{Repository: c.Repository, Tag: tag, Major: major, HubURL: c.HubURL, Logger: h.Log})
}
