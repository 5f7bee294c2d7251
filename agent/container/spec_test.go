package container

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

func TestSpec(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t)
	cfg.Container.Name = "chainlink-test"
	cfg.Container.HostPort = 16688
	cfg.Container.User = "14933:14933"
	cfg.Container.StopTimeout = 1500 * time.Millisecond
	cfg.Container.Log.Options = map[string]string{"awslogs-endpoint": "http://127.0.0.1:5000", "mode": "blocking"}
	cfg.Node.Database.SSLRootCert = "/etc/cl-agent/rds-ca.pem"
	r := tomlRendered()

	spec, err := Spec(cfg, testIdentity, testImage, r)
	if err != nil {
		t.Fatal(err)
	}
	c, h := spec.Config, spec.HostConfig
	if spec.Name != "chainlink-test" || c.Image != testImage.Ref() || !strings.Contains(c.Image, "@sha256:") {
		t.Errorf("name %q image %q; want chainlink-test and %s", spec.Name, c.Image, testImage.Ref())
	}
	if c.User != "14933:14933" || c.Hostname != testIdentity.InstanceID || !slices.Equal(c.Cmd, r.Cmd) || len(c.Env) != 0 {
		t.Errorf("user %q hostname %q cmd %v env %v", c.User, c.Hostname, c.Cmd, c.Env)
	}
	if _, ok := c.ExposedPorts[nodePort]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v; want 6688/tcp", c.ExposedPorts)
	}
	b := h.PortBindings[nodePort]
	if len(b) != 1 || b[0].HostPort != "16688" || b[0].HostIP.String() != "0.0.0.0" {
		t.Errorf("port bindings %+v; want 0.0.0.0:16688", h.PortBindings)
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: cfg.Container.DataDir, Target: "/chainlink"},
		{Type: mount.TypeBind, Source: cfg.Container.SecretsDir, Target: "/run/chainlink", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/etc/cl-agent/rds-ca.pem", Target: "/etc/cl-agent/rds-ca.pem", ReadOnly: true},
	}
	if !slices.Equal(h.Mounts, wantMounts) || len(h.Binds) != 0 {
		t.Errorf("mounts %+v\nwant %+v", h.Mounts, wantMounts)
	}
	if h.RestartPolicy.Name != container.RestartPolicyDisabled || c.StopTimeout == nil || *c.StopTimeout != 2 {
		t.Errorf("restart %q stop timeout %v; want no and 2 (seconds, rounded up)", h.RestartPolicy.Name, c.StopTimeout)
	}
	wantLog := map[string]string{
		"awslogs-group": "ChainlinkLogs", "awslogs-region": "eu-west-1", "awslogs-stream": testIdentity.InstanceID,
		"awslogs-create-group": "true", "mode": "blocking", "max-buffer-size": "4m",
		"awslogs-endpoint": "http://127.0.0.1:5000",
	}
	if h.LogConfig.Type != "awslogs" || !maps.Equal(h.LogConfig.Config, wantLog) {
		t.Errorf("log config %+v; want awslogs %v (options override the defaults)", h.LogConfig, wantLog)
	}
	wantLabels := map[string]string{LabelManaged: "true", LabelInstance: testIdentity.InstanceID,
		LabelImage: testImage.String(), LabelConfigHash: spec.Hash}
	if !maps.Equal(c.Labels, wantLabels) || len(spec.Hash) != 64 {
		t.Errorf("labels %v; want %v", c.Labels, wantLabels)
	}
}

func TestSpecOtherLogDriver(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t)
	cfg.Container.Log.Driver = "json-file"
	cfg.Container.Log.Options = map[string]string{"max-size": "10m"}
	spec, err := Spec(cfg, testIdentity, testImage, tomlRendered())
	if err != nil {
		t.Fatal(err)
	}
	if lc := spec.HostConfig.LogConfig; lc.Type != "json-file" || !maps.Equal(lc.Config, map[string]string{"max-size": "10m"}) {
		t.Errorf("log config %+v; want json-file with only the configured options", lc)
	}
	if len(spec.HostConfig.Mounts) != 2 {
		t.Errorf("mounts %+v; want data and secrets only (no sslrootcert configured)", spec.HostConfig.Mounts)
	}
}

func TestSpecRefuses(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t)
	cases := []struct {
		name string
		img  image.Image
		id   identity.Identity
		r    *nodefiles.Rendered
		want string
	}{
		{"NoRendering", testImage, testIdentity, nil, "no rendered"},
		{"TagNotDigest", image.Image{Repository: "smartcontract/chainlink", Tag: "2.10.0"}, testIdentity, tomlRendered(), "not pinned"},
		{"NoInstanceID", testImage, identity.Identity{Region: "eu-west-1"}, tomlRendered(), "instance id"},
		{"NoRegionForAwslogs", testImage, identity.Identity{InstanceID: "i-1"}, tomlRendered(), "region"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Spec(cfg, tc.id, tc.img, tc.r); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want one about %q", err, tc.want)
			}
		})
	}
}

// TestConfigHash: the hash follows everything that shapes the container, but not secret values, which it
// must never be derived from.
func TestConfigHash(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t)
	legacy := func(dbURL, level string) *nodefiles.Rendered {
		r := tomlRendered()
		r.Format, r.Cmd = nodefiles.FormatEnv, []string{"local", "n", "-p", "/run/chainlink/.password", "-a", "/run/chainlink/.api"}
		r.Env = []string{"ROOT=/chainlink", "LOG_LEVEL=" + level, "DATABASE_URL=" + dbURL, "ETH_URL=wss://user:pw-secret@eth.example/ws"}
		return r
	}
	hash := func(img image.Image, r *nodefiles.Rendered, mutate func(s *ContainerSpec)) string {
		s, err := Spec(cfg, testIdentity, img, r)
		if err != nil {
			t.Fatal(err)
		}
		if mutate != nil {
			mutate(&s)
			return ConfigHash(s)
		}
		return s.Hash
	}
	base := hash(testImage, legacy("postgresql://u:first-password-0123@db/x", "info"), nil)
	if again := hash(testImage, legacy("postgresql://u:first-password-0123@db/x", "info"), nil); again != base {
		t.Fatalf("hash is not stable: %s vs %s", base, again)
	}
	if rotated := hash(testImage, legacy("postgresql://u:second-password-456@db/x", "info"), nil); rotated != base {
		t.Errorf("a new database password changed the hash: the label would be derived from a secret")
	}
	otherImage := testImage
	otherImage.Digest = "sha256:" + strings.Repeat("ab", 32)
	changes := map[string]string{
		"image":     hash(otherImage, legacy("postgresql://u:first-password-0123@db/x", "info"), nil),
		"env value": hash(testImage, legacy("postgresql://u:first-password-0123@db/x", "debug"), nil),
		"format":    hash(testImage, tomlRendered(), nil),
		"port": hash(testImage, legacy("postgresql://u:first-password-0123@db/x", "info"), func(s *ContainerSpec) {
			for p := range s.HostConfig.PortBindings {
				s.HostConfig.PortBindings[p][0].HostPort = "7000"
			}
		}),
		"user": hash(testImage, legacy("postgresql://u:first-password-0123@db/x", "info"), func(s *ContainerSpec) { s.Config.User = "1:1" }),
		"mount": hash(testImage, legacy("postgresql://u:first-password-0123@db/x", "info"), func(s *ContainerSpec) {
			s.HostConfig.Mounts[1].ReadOnly = false
		}),
		"log": hash(testImage, legacy("postgresql://u:first-password-0123@db/x", "info"), func(s *ContainerSpec) {
			s.HostConfig.LogConfig.Config["mode"] = "blocking"
		}),
	}
	for what, h := range changes {
		if h == base {
			t.Errorf("changing the %s did not change the hash", what)
		}
	}
}

func TestSecretEnv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, value string
		secret      bool
	}{
		{"DATABASE_URL", "postgresql://u:p@h/db", true},
		{"DATABASE_BACKUP_URL", "postgresql://u:p@h/db", true},
		{"KEYSTORE_PASSWORD", "x", true},
		{"EXPLORER_SECRET", "x", true},
		{"SOME_API_KEY", "x", true},
		{"ETH_URL", "wss://user:pass@example/ws", true},
		{"ETH_URL", "wss://mainnet.example/ws", false},
		{"LOG_LEVEL", "info", false},
		{"ROOT", "/chainlink", false},
		{"ETH_CHAIN_ID", "1", false},
	}
	for _, tc := range cases {
		if got := secretEnv(tc.name, tc.value); got != tc.secret {
			t.Errorf("secretEnv(%s=%s) = %t; want %t", tc.name, tc.value, got, tc.secret)
		}
	}
}

// TestSpecJSONHoldsNoSecretOf2x: a 2.x node's container carries no secret at all.
func TestSpecJSONHoldsNoSecretOf2x(t *testing.T) {
	t.Parallel()
	spec, err := Spec(unitConfig(t), testIdentity, testImage, tomlRendered())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"fake-keystore-password-0123", "fake-api-password-0123456"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the spec holds a secret: %s", b)
		}
	}
}

// TestSpecPublishesP2P: with node.p2p on, the node's P2P port is exposed and published at the same port on every
// host address, over TCP only (P2P.V2 is ragep2p, TCP); with it off, only the HTTP port is. The hash covers the
// published ports and does not depend on map order.
func TestSpecPublishesP2P(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t)
	cfg.Node.P2P = config.P2P{Enabled: true, ListenPort: 6690, Announce: "203.0.113.7:6690"}
	on, err := Spec(cfg, testIdentity, testImage, tomlRendered())
	if err != nil {
		t.Fatal(err)
	}
	p2p := network.MustParsePort("6690/tcp")
	if _, ok := on.Config.ExposedPorts[p2p]; !ok || len(on.Config.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v; want 6688/tcp and 6690/tcp", on.Config.ExposedPorts)
	}
	b := on.HostConfig.PortBindings[p2p]
	if len(b) != 1 || b[0].HostPort != "6690" || b[0].HostIP.String() != "0.0.0.0" || len(on.HostConfig.PortBindings) != 2 {
		t.Errorf("port bindings %+v; want 0.0.0.0:6690 → 6690/tcp beside the HTTP port", on.HostConfig.PortBindings)
	}
	for port := range on.HostConfig.PortBindings {
		if port.Proto() != "tcp" {
			t.Errorf("published %s; P2P.V2 needs TCP only", port)
		}
	}
	for range 20 {
		if ConfigHash(on) != on.Hash {
			t.Fatal("the hash of a spec with two published ports changes from call to call")
		}
	}

	cfg.Node.P2P.Enabled = false
	off, err := Spec(cfg, testIdentity, testImage, tomlRendered())
	if err != nil {
		t.Fatal(err)
	}
	if len(off.Config.ExposedPorts) != 1 || len(off.HostConfig.PortBindings) != 1 || off.Hash == on.Hash {
		t.Errorf("P2P off: exposed %v bindings %v (hash changed: %t); want the HTTP port alone and another hash",
			off.Config.ExposedPorts, off.HostConfig.PortBindings, off.Hash != on.Hash)
	}
}
