package image

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseRepository(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in       string
		hub      bool
		ns, name string // Docker Hub
		registry string // other registries: scheme://host
	}{
		{in: "smartcontract/chainlink", hub: true, ns: "smartcontract", name: "chainlink"},
		{in: "docker.io/smartcontract/chainlink", hub: true, ns: "smartcontract", name: "chainlink"},
		{in: "index.docker.io/smartcontract/chainlink", hub: true, ns: "smartcontract", name: "chainlink"},
		{in: "registry-1.docker.io/smartcontract/chainlink", hub: true, ns: "smartcontract", name: "chainlink"},
		{in: "postgres", hub: true, ns: "library", name: "postgres"},
		{in: "docker.io/postgres", hub: true, ns: "library", name: "postgres"},
		{in: "public.ecr.aws/chainlink/chainlink", registry: "https://public.ecr.aws", name: "chainlink/chainlink"},
		{in: "registry.example:5000/a/b/c", registry: "https://registry.example:5000", name: "a/b/c"},
		{in: "127.0.0.1:5000/a/b", registry: "http://127.0.0.1:5000", name: "a/b"},
		{in: "127.8.9.1:5000/a", registry: "http://127.8.9.1:5000", name: "a"},
		{in: "localhost/a", registry: "http://localhost", name: "a"},
		{in: "localhost:5000/a", registry: "http://localhost:5000", name: "a"},
		{in: "[::1]:5000/a", registry: "http://[::1]:5000", name: "a"},
		{in: "10.0.0.5:5000/a", registry: "https://10.0.0.5:5000", name: "a"},
	}
	for _, tc := range cases {
		r, err := parseRepository(tc.in, defaultHubURL)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if r.hub != tc.hub || r.name != tc.name || r.ns != tc.ns {
			t.Errorf("%q: hub=%v ns=%q name=%q, want hub=%v ns=%q name=%q", tc.in, r.hub, r.ns, r.name, tc.hub, tc.ns, tc.name)
		}
		if !tc.hub && r.registry.String() != tc.registry {
			t.Errorf("%q: registry %s, want %s", tc.in, r.registry, tc.registry)
		}
	}
	for _, bad := range []string{"", "smartcontract/chainlink:2.10.0", "smartcontract/chainlink@" + fakeDigest("x"),
		"SmartContract/chainlink", "docker.io/a/b/c", "a//b", "http://registry.example/a"} {
		if _, err := parseRepository(bad, defaultHubURL); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%q: err = %v, want ErrBadOptions", bad, err)
		}
	}
	for _, hubURL := range []string{"ftp://hub.example", "hub.docker.com", "https://user:pw@hub.example", "https://"} {
		if _, err := parseRepository("smartcontract/chainlink", hubURL); !errors.Is(err, ErrBadOptions) {
			t.Errorf("hub URL %q: err = %v, want ErrBadOptions", hubURL, err)
		}
	}
}

func TestBadPinnedTag(t *testing.T) {
	t.Parallel()
	for _, tag := range []string{"-x", "a/b", "2.10.0@sha256", ".hidden", string(make([]byte, 129))} {
		_, err := Resolve(context.Background(), Options{Repository: "smartcontract/chainlink", Tag: tag})
		if !errors.Is(err, ErrBadOptions) {
			t.Errorf("tag %q: err = %v, want ErrBadOptions", tag, err)
		}
	}
}

func TestImageVersion(t *testing.T) {
	t.Parallel()
	for tag, major := range map[string]uint64{"2.10.0": 2, "1.13.3": 1, "2.10.0-root": 2} {
		v, err := Image{Tag: tag}.Version()
		if err != nil || v.Major() != major {
			t.Errorf("%q: %v, %v; want major %d", tag, v, err, major)
		}
	}
	for _, tag := range []string{"latest", "sha-abc", "v2.10.0"} {
		if _, err := (Image{Tag: tag}).Version(); err == nil {
			t.Errorf("%q: a version", tag)
		}
	}
	img := Image{Repository: "public.ecr.aws/chainlink/chainlink", Tag: "2.10.0", Digest: fakeDigest("x"), ResolvedAt: time.Now()}
	if img.Ref() != "public.ecr.aws/chainlink/chainlink@"+fakeDigest("x") ||
		img.String() != "public.ecr.aws/chainlink/chainlink:2.10.0@"+fakeDigest("x") {
		t.Errorf("Ref %q String %q", img.Ref(), img.String())
	}
}
