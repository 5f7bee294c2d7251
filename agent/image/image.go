package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/distribution/reference"
	"go.uber.org/zap"
)

// Errors of image resolution, for errors.Is.
var (
	// ErrUnreachable: the tag source could not be reached (network error, timeout, 429 or 5xx after retries).
	// Worth retrying later. Resolve only returns it when no saved choice could stand in.
	ErrUnreachable = errors.New("image source unreachable")
	// ErrTagNotFound: the pinned tag does not exist in the repository.
	ErrTagNotFound = errors.New("tag not found")
	// ErrNoRelease: no X.Y.Z tag (within the major, if set) with an image for this host's platform.
	ErrNoRelease = errors.New("no suitable release")
	// ErrNoPlatform: the tag has no image for this host's architecture and OS.
	ErrNoPlatform = errors.New("no image for this platform")
	// ErrBadOptions: the options cannot work (repository or tag malformed, bad hub URL).
	ErrBadOptions = errors.New("bad image options")
)

const (
	defaultHubURL   = "https://hub.docker.com"
	defaultMaxPages = 50
	// maxCandidates bounds how many releases, highest first, are checked for this host's platform.
	maxCandidates = 20
)

// Options says which image to run. The zero values of the optional fields mean their defaults.
type Options struct {
	// Repository: "smartcontract/chainlink", "docker.io/x/y" (Docker Hub, through the Hub API), or one on
	// another registry: "public.ecr.aws/chainlink/chainlink", "127.0.0.1:5000/a/b" (plain HTTP on loopback
	// only). No tag or digest in it. Required.
	Repository string
	// Tag pins a tag; any valid tag is accepted ("2.10.0", "2.10.0-root"): the operator chose it. Empty: the
	// newest stable X.Y.Z release.
	Tag string
	// Major keeps an unpinned choice within one major version (0: any). Ignored when Tag is set.
	Major uint64
	// HubURL is the Docker Hub API. Default https://hub.docker.com.
	HubURL string
	// Arch and OS of the image to run. Default runtime.GOARCH and "linux".
	Arch, OS string
	// StateDir keeps the last good choice (image.json) for when the source cannot be reached. Empty: no
	// saved choice, no fallback.
	StateDir string
	// Timeout bounds each request (default 20s); ctx bounds the whole resolution, retries included.
	Timeout time.Duration
	// MaxPages bounds the pages of tags read (default 50, 100 tags each). A longer list is an error rather
	// than a choice from a partial list.
	MaxPages int
	// Logger gets the choice, skipped releases and fallbacks. Default: none.
	Logger *zap.Logger

	retry retryPolicy // zero: defaults; tests shorten the waits
}

// Image is a resolved image: a tag pinned to the digest that is pulled and run.
type Image struct {
	Repository string
	Tag        string
	Digest     string // "sha256:…": what runs; a tag can be re-pushed, the digest is what to audit
	ResolvedAt time.Time
	FromCache  bool // the source could not be reached: this is the last good choice, from StateDir
}

// Ref is what is pulled and run: "repository@sha256:…".
func (i Image) Ref() string { return i.Repository + "@" + i.Digest }

// String is what `cl-agent resolve-image` prints: "repository:tag@sha256:…".
func (i Image) String() string { return i.Repository + ":" + i.Tag + "@" + i.Digest }

// Pinned reports whether i names a repository and a sha256 digest: what may be pulled and run. A tag alone can
// be re-pushed under the agent, so an image without a digest is never run.
func (i Image) Pinned() bool { return i.Repository != "" && checkDigest(i.Digest) == nil }

// Version parses the tag as a semantic version ("2.10.0", and "2.10.0-root" for a pinned tag) so the agent
// can choose the node's config format. A tag that is no version ("latest") is an error: set the format.
func (i Image) Version() (*semver.Version, error) {
	v, err := semver.StrictNewVersion(i.Tag)
	if err != nil {
		return nil, fmt.Errorf("image tag %q is not a version (%v): set node.format explicitly", i.Tag, err)
	}
	return v, nil
}

// source is where tags and digests come from: the Docker Hub API or a registry's /v2 API.
type source interface {
	// tags lists every tag of the repository.
	tags(ctx context.Context) ([]string, error)
	// resolve returns the digest of tag, ErrNoPlatform when it has no image for the platform, or
	// ErrTagNotFound.
	resolve(ctx context.Context, tag string) (string, error)
}

// Resolve chooses the image: the pinned tag, or the highest X.Y.Z release (within Major) with an image
// for this host's platform, pinned to its digest. The choice is saved in StateDir. When the source cannot be
// reached it returns the saved choice (FromCache, with a warning) if that was made for the same repository
// and settings; otherwise the error says what failed. A 4xx such as a missing pinned tag is never covered
// by the saved choice.
func Resolve(ctx context.Context, o Options) (Image, error) {
	o, repo, err := o.check()
	if err != nil {
		return Image{}, err
	}
	client := newHTTPClient(o.Timeout, o.retry, o.Logger)
	defer client.hc.CloseIdleConnections() // the transport is this call's: leave no keep-alive behind
	var src source
	if repo.hub {
		src = &hubSource{http: client, base: repo.hubURL, ns: repo.ns, name: repo.name, platform: repo.platform,
			maxPages: o.MaxPages, log: o.Logger}
	} else {
		src = &registrySource{http: client, base: repo.registry, name: repo.name, platform: repo.platform,
			maxPages: o.MaxPages, log: o.Logger}
	}

	img, err := resolveFrom(ctx, src, o)
	if err == nil {
		if serr := saveImage(o.StateDir, img); serr != nil {
			// The choice stands; only the fallback for a later outage is lost.
			o.Logger.Warn("could not save the image choice", zap.Error(serr))
		}
		o.Logger.Info("image resolved", zap.String("image", img.String()))
		return img, nil
	}
	if !errors.Is(err, ErrUnreachable) {
		return Image{}, err
	}
	saved, lerr := loadImage(o.StateDir)
	if lerr != nil {
		return Image{}, fmt.Errorf("%w; no saved choice to fall back to: %v", err, lerr)
	}
	if why := saved.mismatch(o); why != "" {
		return Image{}, fmt.Errorf("%w; the saved choice %s does not apply: %s", err, saved, why)
	}
	o.Logger.Warn("image source unreachable, using the last good choice",
		zap.String("image", saved.String()), zap.Time("resolved_at", saved.ResolvedAt),
		zap.Duration("age", time.Since(saved.ResolvedAt).Round(time.Second)), zap.Error(err))
	return saved, nil
}

// resolveFrom picks the tag and its digest from src.
func resolveFrom(ctx context.Context, src source, o Options) (Image, error) {
	if o.Tag != "" {
		if _, ok := releaseVersion(o.Tag); !ok {
			o.Logger.Warn("pinned image tag is not a stable X.Y.Z release", zap.String("tag", o.Tag))
		}
		digest, err := src.resolve(ctx, o.Tag)
		if err != nil {
			return Image{}, fmt.Errorf("resolve %s:%s: %w", o.Repository, o.Tag, err)
		}
		return Image{Repository: o.Repository, Tag: o.Tag, Digest: digest, ResolvedAt: time.Now().UTC()}, nil
	}

	tags, err := src.tags(ctx)
	if err != nil {
		return Image{}, err
	}
	releases := rankReleases(tags, o.Major)
	if len(releases) == 0 {
		return Image{}, fmt.Errorf("%w: none of the %d tags of %s is an X.Y.Z release%s",
			ErrNoRelease, len(tags), o.Repository, withinMajor(o.Major))
	}
	var skipped []string
	for _, r := range releases[:min(len(releases), maxCandidates)] {
		digest, err := src.resolve(ctx, r.tag)
		if errors.Is(err, ErrNoPlatform) || errors.Is(err, ErrTagNotFound) {
			o.Logger.Info("skipping release", zap.String("tag", r.tag), zap.Error(err))
			skipped = append(skipped, r.tag)
			continue
		}
		if err != nil {
			return Image{}, fmt.Errorf("resolve %s:%s: %w", o.Repository, r.tag, err)
		}
		return Image{Repository: o.Repository, Tag: r.tag, Digest: digest, ResolvedAt: time.Now().UTC()}, nil
	}
	return Image{}, fmt.Errorf("%w: no image for %s/%s in the %d highest releases of %s%s (%s)",
		ErrNoRelease, o.OS, o.Arch, len(skipped), o.Repository, withinMajor(o.Major), strings.Join(skipped, ", "))
}

func withinMajor(major uint64) string {
	if major == 0 {
		return ""
	}
	return fmt.Sprintf(" within major %d", major)
}

// platform is the OS and architecture an image must have to run here.
type platform struct{ os, arch string }

func (p platform) String() string { return p.os + "/" + p.arch }

// imageRepo is a parsed Options.Repository.
type imageRepo struct {
	hub      bool
	hubURL   *url.URL // Docker Hub: the API
	ns       string   // Docker Hub: namespace ("library" for official images)
	registry *url.URL // other registries: scheme://host[:port]
	name     string   // Docker Hub: the repository in ns; otherwise the path on the registry
	platform platform
}

// tagPattern is the registry grammar for a tag.
var tagPattern = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

// check fills the defaults and parses the repository.
func (o Options) check() (Options, imageRepo, error) {
	if o.HubURL == "" {
		o.HubURL = defaultHubURL
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.OS == "" {
		o.OS = "linux"
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultRequestTimeout
	}
	if o.MaxPages <= 0 {
		o.MaxPages = defaultMaxPages
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	o.Repository = strings.TrimSpace(o.Repository)
	if o.Tag != "" && !tagPattern.MatchString(o.Tag) {
		return o, imageRepo{}, fmt.Errorf("%w: tag %q is not a valid tag", ErrBadOptions, o.Tag)
	}
	repo, err := parseRepository(o.Repository, o.HubURL)
	if err != nil {
		return o, imageRepo{}, err
	}
	repo.platform = platform{os: o.OS, arch: o.Arch}
	return o, repo, nil
}

// parseRepository tells Docker Hub from other registries. A name with no registry host (its first element
// has no '.' or ':' and is not "localhost") or with docker.io, index.docker.io or registry-1.docker.io is on
// Docker Hub. Other registries are spoken to over https, except loopback hosts over plain http.
func parseRepository(s, hubURL string) (imageRepo, error) {
	bad := func(format string, args ...any) (imageRepo, error) {
		return imageRepo{}, fmt.Errorf("%w: image repository %q: %s", ErrBadOptions, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty")
	}
	if rest, ok := strings.CutPrefix(s, "registry-1.docker.io/"); ok {
		s = "docker.io/" + rest
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return bad("%v", err)
	}
	if !reference.IsNameOnly(named) {
		return bad("a repository carries no tag or digest (set image.tag)")
	}
	domain, path := reference.Domain(named), reference.Path(named)
	if domain != "localhost" && !strings.ContainsAny(domain, ".:") {
		// reference takes an upper-case first element for a host; it is a Docker Hub namespace that is not
		// lower case.
		return bad("repository names are lower case")
	}
	if domain != "docker.io" {
		scheme := "https"
		if isLoopback(domain) {
			scheme = "http"
		}
		return imageRepo{registry: &url.URL{Scheme: scheme, Host: domain}, name: path}, nil
	}
	ns, name, ok := strings.Cut(path, "/")
	if !ok || strings.Contains(name, "/") {
		return bad("a Docker Hub repository is namespace/name")
	}
	u, err := url.Parse(hubURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return imageRepo{}, fmt.Errorf("%w: hub URL %q: want http(s)://host, without credentials", ErrBadOptions, redactURL(hubURL))
	}
	return imageRepo{hub: true, hubURL: u, ns: ns, name: name}, nil
}

// isLoopback tells whether a registry host[:port] is this machine.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// digestPattern is the only digest form accepted: sha256, which is also what is verified.
var digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

func checkDigest(d string) error {
	if !digestPattern.MatchString(d) {
		return fmt.Errorf("digest %q is not sha256:<64 hex>", d)
	}
	return nil
}
