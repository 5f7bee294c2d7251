package image

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// Manifest media types the registry may answer with; all are asked for, so that a multi-platform tag
// answers with its index (whose digest is what `docker pull` pins) and not a converted single manifest.
const (
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
)

var manifestAccept = strings.Join([]string{mediaOCIIndex, mediaDockerList, mediaOCIManifest, mediaDockerManifest}, ", ")

// registryPageSize is how many tags a page of /tags/list is asked for.
const registryPageSize = 100

// registrySource reads tags and digests from a registry's /v2 API (ECR Public, a private registry, the
// loopback registry of the tests). It answers a Bearer token challenge anonymously and keeps the token for
// the rest of the resolution; the token never reaches a log or an error.
type registrySource struct {
	http     *httpClient
	base     *url.URL // scheme://host[:port]
	name     string
	platform platform
	maxPages int
	log      *zap.Logger

	token string
}

func (r *registrySource) repo() string { return r.base.Host + "/" + r.name }

func (r *registrySource) tags(ctx context.Context) ([]string, error) {
	op := "list tags of " + r.repo()
	first := r.base.JoinPath("v2", r.name, "tags", "list")
	first.RawQuery = url.Values{"n": {fmt.Sprint(registryPageSize)}}.Encode()

	var names []string
	guard := newPageGuard(op, r.maxPages)
	for next, page := first.String(), 1; next != ""; page++ {
		if err := guard.visit(next, page, len(names)); err != nil {
			return nil, err
		}

		resp, err := r.send(ctx, op, http.MethodGet, next, http.Header{"Accept": {"application/json"}})
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, statusError(resp, op)
		}
		link := resp.Header.Get("Link")
		body, err := readBody(resp, op, http.MethodGet, next)
		if err != nil {
			return nil, err
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("%s: GET %s: decoding the answer: %w", op, redactURL(next), err)
		}
		names = append(names, list.Tags...)
		if next, err = r.nextLink(next, link); err != nil {
			return nil, fmt.Errorf("%s: page %d: %w", op, page, err)
		}
	}
	return names, nil
}

// nextLink reads `Link: <…>; rel="next"`, resolved against the current page, and refuses one that leaves
// the registry (the token must not travel).
func (r *registrySource) nextLink(current, header string) (string, error) {
	for _, part := range strings.Split(header, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		target = strings.Trim(strings.TrimSpace(target), "<>")
		base, err := url.Parse(current)
		if err != nil {
			return "", err
		}
		u, err := url.Parse(target)
		if err != nil {
			return "", fmt.Errorf("bad Link %q: %v", redactURL(target), err)
		}
		u = base.ResolveReference(u)
		if u.Scheme != r.base.Scheme || u.Host != r.base.Host {
			return "", fmt.Errorf("next link %s leaves %s; refused", redactURL(u.String()), r.base)
		}
		return u.String(), nil
	}
	return "", nil
}

// resolve pins tag to the digest the registry serves for it (a HEAD, which Docker Hub does not count as a
// pull) and checks that it holds an image for the platform.
func (r *registrySource) resolve(ctx context.Context, tag string) (string, error) {
	op := fmt.Sprintf("read manifest of %s:%s", r.repo(), tag)
	u := r.base.JoinPath("v2", r.name, "manifests", tag).String()
	resp, err := r.send(ctx, op, http.MethodHead, u, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return "", err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", fmt.Errorf("%w: %w", ErrTagNotFound, statusError(resp, op))
	default:
		return "", statusError(resp, op)
	}
	digest := resp.Header.Get("Docker-Content-Digest")
	drain(resp)
	if digest == "" { // not every registry sets it on HEAD: the digest of the body is the same thing
		body, _, err := r.getVerified(ctx, op, "manifests", tag, "")
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(body)
		digest = "sha256:" + hex.EncodeToString(sum[:])
	}
	if err := checkDigest(digest); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if err := r.checkPlatform(ctx, tag, digest); err != nil {
		return "", err
	}
	return digest, nil
}

// manifest holds the fields of an index (Manifests) or of an image manifest (Config) that matter here.
type manifest struct {
	MediaType string `json:"mediaType"`
	Manifests []struct {
		Platform struct {
			Architecture string `json:"architecture"`
			OS           string `json:"os"`
		} `json:"platform"`
	} `json:"manifests"`
	Config struct {
		Digest string `json:"digest"`
	} `json:"config"`
}

// checkPlatform reads the manifest by digest: an index lists its platforms; a single image's platform is in
// its config blob.
func (r *registrySource) checkPlatform(ctx context.Context, tag, digest string) error {
	op := fmt.Sprintf("read manifest of %s:%s (%s)", r.repo(), tag, digest)
	body, contentType, err := r.getVerified(ctx, op, "manifests", digest, digest)
	if err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("%s: decoding the manifest: %w", op, err)
	}
	if m.MediaType == "" {
		m.MediaType = contentType
	}
	var have []string
	switch {
	case m.MediaType == mediaOCIIndex || m.MediaType == mediaDockerList || len(m.Manifests) > 0:
		for _, d := range m.Manifests {
			if d.Platform.OS == r.platform.os && d.Platform.Architecture == r.platform.arch {
				return nil
			}
			have = append(have, d.Platform.OS+"/"+d.Platform.Architecture)
		}
	case m.Config.Digest != "":
		if err := checkDigest(m.Config.Digest); err != nil {
			return fmt.Errorf("%s: config: %w", op, err)
		}
		op := fmt.Sprintf("read image config of %s:%s", r.repo(), tag)
		blob, _, err := r.getVerified(ctx, op, "blobs", m.Config.Digest, m.Config.Digest)
		if err != nil {
			return err
		}
		var cfg struct {
			Architecture string `json:"architecture"`
			OS           string `json:"os"`
		}
		if err := json.Unmarshal(blob, &cfg); err != nil {
			return fmt.Errorf("%s: decoding the config: %w", op, err)
		}
		if cfg.OS == r.platform.os && cfg.Architecture == r.platform.arch {
			return nil
		}
		have = append(have, cfg.OS+"/"+cfg.Architecture)
	default:
		return fmt.Errorf("%s: neither an index nor an image manifest (media type %q)", op, m.MediaType)
	}
	return fmt.Errorf("%w: tag %s has no %s image (has: %s)", ErrNoPlatform, tag, r.platform, strings.Join(have, ", "))
}

// getVerified GETs /v2/<name>/<kind>/<ref> and, when want is set, checks that the body's sha256 is want: what
// was pinned is what was read. It returns the body and its Content-Type.
func (r *registrySource) getVerified(ctx context.Context, op, kind, ref, want string) ([]byte, string, error) {
	u := r.base.JoinPath("v2", r.name, kind, ref).String()
	resp, err := r.send(ctx, op, http.MethodGet, u, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", statusError(resp, op)
	}
	contentType := resp.Header.Get("Content-Type")
	body, err := readBody(resp, op, http.MethodGet, u)
	if err != nil {
		return nil, "", err
	}
	if want != "" {
		sum := sha256.Sum256(body)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != want {
			return nil, "", fmt.Errorf("%s: GET %s: content has digest %s, want %s", op, redactURL(u), got, want)
		}
	}
	return body, contentType, nil
}

// send is httpClient.do with the registry's token: on a 401 with a Bearer challenge it fetches an anonymous
// token and tries once more.
func (r *registrySource) send(ctx context.Context, op, method, rawURL string, header http.Header) (*http.Response, error) {
	for retried := false; ; retried = true {
		h := header.Clone()
		if r.token != "" {
			h.Set("Authorization", "Bearer "+r.token)
		}
		resp, err := r.http.do(ctx, op, method, rawURL, h)
		if err != nil || resp.StatusCode != http.StatusUnauthorized || retried {
			return resp, err
		}
		challenge := resp.Header.Get("WWW-Authenticate")
		drain(resp)
		if err := r.fetchToken(ctx, challenge); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
}

// fetchToken answers a challenge `Bearer realm="…",service="…",scope="…"` anonymously: GET the realm with
// service and scope, and keep "token" (or "access_token").
func (r *registrySource) fetchToken(ctx context.Context, challenge string) error {
	scheme, params := parseChallenge(challenge)
	if !strings.EqualFold(scheme, "bearer") {
		return fmt.Errorf("registry asks for %q authentication; only anonymous Bearer tokens are supported", scheme)
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") || realm.Host == "" {
		return fmt.Errorf("token challenge has no usable realm (%q)", redactURL(params["realm"]))
	}
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	scope := params["scope"]
	if scope == "" {
		scope = "repository:" + r.name + ":pull"
	}
	q.Set("scope", scope)
	realm.RawQuery = q.Encode()

	op := "get an anonymous pull token for " + r.repo()
	resp, err := r.http.do(ctx, op, http.MethodGet, realm.String(), http.Header{"Accept": {"application/json"}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(resp, op)
	}
	body, err := readBody(resp, op, http.MethodGet, realm.String())
	if err != nil {
		return err
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		return fmt.Errorf("%s: decoding the answer: %w", op, err) // not %s of the body: it may hold a token
	}
	r.token = cmp.Or(tok.Token, tok.AccessToken)
	if r.token == "" {
		return errors.New(op + ": the answer holds no token")
	}
	return nil
}

// parseChallenge splits a WWW-Authenticate value into its scheme and lower-cased parameters; values may be
// quoted (with backslash escapes) and hold commas.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := make(map[string]string)
	rest = strings.TrimSpace(rest)
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		key = strings.ToLower(strings.TrimSpace(key))
		after = strings.TrimLeft(after, " ")
		var val string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			val, rest = b.String(), after[min(i+1, len(after)):]
		} else {
			val, rest, _ = strings.Cut(after, ",")
			val = strings.TrimSpace(val)
		}
		params[key] = val
		rest = strings.TrimLeft(rest, " ,")
	}
	return scheme, params
}
