package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// hubPageSize is the most the Hub API gives per page.
const hubPageSize = 100

// hubSource reads tags and digests from the Docker Hub API (no registry pull is counted):
// GET {hub}/v2/namespaces/{ns}/repositories/{name}/tags?page_size=100, following "next".
type hubSource struct {
	http     *httpClient
	base     *url.URL
	ns, name string
	platform platform
	maxPages int
	log      *zap.Logger

	records map[string]hubTag // from the listing, so that resolve needs no request
}

// hubPage is one page of the tag listing.
type hubPage struct {
	Next    *string  `json:"next"`
	Results []hubTag `json:"results"`
}

// hubTag is a tag's record. Digest is the tag's manifest (for a multi-platform tag, its index); Images are
// the platforms it holds.
type hubTag struct {
	Name   string     `json:"name"`
	Digest string     `json:"digest"`
	Images []hubImage `json:"images"`
}

type hubImage struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Digest       string `json:"digest"`
}

func (h *hubSource) tagsURL() *url.URL {
	return h.base.JoinPath("v2", "namespaces", h.ns, "repositories", h.name, "tags")
}

func (h *hubSource) tags(ctx context.Context) ([]string, error) {
	op := fmt.Sprintf("list tags of %s/%s on Docker Hub", h.ns, h.name)
	first := h.tagsURL()
	first.RawQuery = url.Values{"page_size": {fmt.Sprint(hubPageSize)}}.Encode()

	h.records = make(map[string]hubTag)
	var names []string
	guard := newPageGuard(op, h.maxPages)
	for next, page := first.String(), 1; next != ""; page++ {
		if err := guard.visit(next, page, len(names)); err != nil {
			return nil, err
		}

		var p hubPage
		if err := h.getJSON(ctx, op, next, &p); err != nil {
			return nil, err
		}
		for _, t := range p.Results {
			if _, dup := h.records[t.Name]; !dup {
				h.records[t.Name] = t
				names = append(names, t.Name)
			}
		}
		h.log.Debug("tags page", zap.String("op", op), zap.Int("page", page), zap.Int("tags", len(p.Results)))
		next = ""
		if p.Next != nil && *p.Next != "" {
			n, err := h.sameHost(*p.Next)
			if err != nil {
				return nil, fmt.Errorf("%s: page %d: %w", op, page, err)
			}
			next = n
		}
	}
	return names, nil
}

// sameHost refuses a "next" link that leaves the hub URL: the listing is only trusted from there.
func (h *hubSource) sameHost(next string) (string, error) {
	u, err := url.Parse(next)
	if err != nil {
		return "", fmt.Errorf("bad next link %q: %v", redactURL(next), err)
	}
	u = h.base.ResolveReference(u)
	if u.Scheme != h.base.Scheme || u.Host != h.base.Host {
		return "", fmt.Errorf("next link %s leaves %s://%s; refused", redactURL(u.String()), h.base.Scheme, h.base.Host)
	}
	return u.String(), nil
}

func (h *hubSource) resolve(ctx context.Context, tag string) (string, error) {
	rec, ok := h.records[tag]
	if !ok {
		op := fmt.Sprintf("read tag %s/%s:%s on Docker Hub", h.ns, h.name, tag)
		if err := h.getJSON(ctx, op, h.tagsURL().JoinPath(tag).String(), &rec); err != nil {
			var he *HTTPError
			if errors.As(err, &he) && he.Status == http.StatusNotFound {
				return "", fmt.Errorf("%w: %w", ErrTagNotFound, err)
			}
			return "", err
		}
	}
	return rec.digestFor(h.platform)
}

// digestFor returns the digest to pin when the tag holds an image for p: the tag's own digest (the index of
// a multi-platform tag), or else that image's.
func (t hubTag) digestFor(p platform) (string, error) {
	var have []string
	for _, img := range t.Images {
		if img.Architecture == p.arch && img.OS == p.os {
			d := t.Digest
			if d == "" {
				d = img.Digest
			}
			if err := checkDigest(d); err != nil {
				return "", fmt.Errorf("tag %s: %w", t.Name, err)
			}
			return d, nil
		}
		have = append(have, img.OS+"/"+img.Architecture)
	}
	return "", fmt.Errorf("%w: tag %s has no %s image (has: %s)", ErrNoPlatform, t.Name, p, strings.Join(have, ", "))
}

// getJSON GETs url and decodes a 200 answer into v.
func (h *hubSource) getJSON(ctx context.Context, op, rawURL string, v any) error {
	resp, err := h.http.do(ctx, op, http.MethodGet, rawURL, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(resp, op)
	}
	body, err := readBody(resp, op, http.MethodGet, rawURL)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: GET %s: decoding the answer: %w", op, redactURL(rawURL), err)
	}
	return nil
}
