package container

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// Labels on the node's container. A container without LabelManaged=true is never touched.
const (
	LabelManaged    = "cl-agent.managed"
	LabelInstance   = "cl-agent.instance"
	LabelImage      = "cl-agent.image"       // repository:tag@digest, for operators
	LabelConfigHash = "cl-agent.config-hash" // ConfigHash of the spec; never covers a secret value
)

// Log options the agent sets for the awslogs driver; container.log.options may override them.
const (
	awslogsMode          = "non-blocking" // a CloudWatch outage must not block the node's writes
	awslogsMaxBufferSize = "4m"           // bounded memory for lines not yet shipped; overflow drops lines
)

// nodePort is the node's HTTP port inside the container, as the engine names it.
var nodePort = network.MustParsePort(strconv.Itoa(nodefiles.NodePort) + "/tcp")

// ContainerSpec is everything the node's container is created from.
type ContainerSpec struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
	// Hash is ConfigHash of this spec; it is also the LabelConfigHash label.
	Hash string
}

// Spec builds the node's container from the configuration, this host's identity, the resolved image and the
// rendered node files: the image by digest, the node generation's command line (and, for 1.x, environment),
// the node user, host_port published to 6688 on every address (the load balancer reaches it), with node.p2p on
// its listen_port published at the same port (TCP) on every address (the P2P load balancer's target), data_dir
// mounted read-write at /chainlink, secrets_dir read-only at /run/chainlink, the database CA (if any)
// read-only at its own path, the instance id as host name, the managed labels, the log driver, restart policy
// "no" (the agent restarts the node itself, after rendering the files again) and the stop timeout.
func Spec(cfg *config.Config, id identity.Identity, img image.Image, r *nodefiles.Rendered) (ContainerSpec, error) {
	k := cfg.Container
	switch {
	case r == nil:
		return ContainerSpec{}, errors.New("container spec: no rendered node files")
	case !img.Pinned():
		return ContainerSpec{}, fmt.Errorf("container spec: image %q is not pinned to a sha256 digest", img.String())
	case id.InstanceID == "":
		return ContainerSpec{}, errors.New("container spec: the instance id is unknown")
	}
	if _, _, err := k.UIDGID(); err != nil {
		return ContainerSpec{}, fmt.Errorf("container spec: container.user: %w", err)
	}
	logConfig, err := logConfig(k.Log, id)
	if err != nil {
		return ContainerSpec{}, err
	}
	mounts := []mount.Mount{
		{Type: mount.TypeBind, Source: k.DataDir, Target: nodefiles.DataMount},
		{Type: mount.TypeBind, Source: k.SecretsDir, Target: nodefiles.SecretsMount, ReadOnly: true},
	}
	if ca := cfg.Node.Database.SSLRootCert; ca != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: ca, Target: ca, ReadOnly: true})
	}
	exposed, bindings := ports(cfg)
	stopSecs := int(math.Ceil(k.StopTimeout.Seconds()))
	spec := ContainerSpec{
		Name: k.Name,
		Config: &container.Config{
			Hostname:     id.InstanceID, // the node's host name in its logs and lease records
			User:         k.User,
			ExposedPorts: exposed,
			Env:          r.Env,
			Cmd:          r.Cmd,
			Image:        img.Ref(),
			Labels: map[string]string{
				LabelManaged:  "true",
				LabelInstance: id.InstanceID,
				LabelImage:    img.String(),
			},
			StopTimeout: &stopSecs,
		},
		HostConfig: &container.HostConfig{
			// Mounts, not Binds: a missing source is an error instead of a root-owned directory made by the engine.
			Mounts:        mounts,
			LogConfig:     logConfig,
			PortBindings:  bindings,
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		},
	}
	spec.Hash = ConfigHash(spec)
	spec.Config.Labels[LabelConfigHash] = spec.Hash
	return spec, nil
}

// ports are the node's published ports: host_port to its 6688, and node.p2p's listen_port (TCP) when P2P is on.
func ports(cfg *config.Config) (network.PortSet, network.PortMap) {
	exposed := network.PortSet{nodePort: {}}
	bindings := network.PortMap{nodePort: {{HostIP: netip.IPv4Unspecified(), HostPort: strconv.Itoa(cfg.Container.HostPort)}}}
	if p := cfg.Node.P2P; p.Enabled {
		// P2P.V2 is libocr's ragep2p, which listens and dials over TCP only: no UDP port to publish.
		p2p := network.MustParsePort(strconv.Itoa(p.ListenPort) + "/tcp")
		exposed[p2p] = struct{}{}
		bindings[p2p] = []network.PortBinding{{HostIP: netip.IPv4Unspecified(), HostPort: strconv.Itoa(p.ListenPort)}}
	}
	return exposed, bindings
}

// logConfig is the container's log driver. awslogs ships to container.log.group in this host's region under a
// stream named after the instance, creating the group if needed, in non-blocking mode with a bounded buffer;
// container.log.options come last and win. Other drivers get exactly container.log.options.
func logConfig(l config.LogDriver, id identity.Identity) (container.LogConfig, error) {
	opts := map[string]string{}
	if l.Driver == "awslogs" {
		opts["awslogs-group"] = l.Group
		opts["awslogs-region"] = id.Region
		opts["awslogs-stream"] = id.InstanceID
		opts["awslogs-create-group"] = "true"
		opts["mode"] = awslogsMode
		opts["max-buffer-size"] = awslogsMaxBufferSize
	}
	for k, v := range l.Options {
		opts[k] = v
	}
	if l.Driver == "awslogs" && opts["awslogs-region"] == "" {
		return container.LogConfig{}, errors.New("container spec: awslogs needs the region, and it is unknown (set instance.region)")
	}
	return container.LogConfig{Type: l.Driver, Config: opts}, nil
}

// ConfigHash is a sha256 over the spec's non-secret content: image, command line, user, host name, ports,
// mounts, log configuration, restart policy, stop timeout, labels, and the environment with the names of
// every variable but the values only of those that carry no secret (see secretEnv). Two specs with the same
// hash create the same container, up to secret values, which are never hashed into a label.
func ConfigHash(s ContainerSpec) string {
	c, h := s.Config, s.HostConfig
	in := struct {
		Name, Image, User, Hostname string
		Cmd, Env                    []string
		Labels                      map[string]string
		Ports                       []string
		Mounts                      []string
		LogDriver                   string
		LogOptions                  map[string]string
		Restart                     string
		StopTimeout                 int
	}{Name: s.Name, Image: c.Image, User: c.User, Hostname: c.Hostname, Cmd: c.Cmd, LogDriver: h.LogConfig.Type,
		LogOptions: h.LogConfig.Config, Restart: string(h.RestartPolicy.Name), Labels: map[string]string{}}
	for k, v := range c.Labels {
		if k != LabelConfigHash {
			in.Labels[k] = v
		}
	}
	for _, kv := range c.Env {
		name, value, _ := strings.Cut(kv, "=")
		if secretEnv(name, value) {
			kv = name // the name only: a change of the secret alone does not show, by design
		}
		in.Env = append(in.Env, kv)
	}
	for port, bindings := range h.PortBindings {
		for _, b := range bindings {
			in.Ports = append(in.Ports, b.HostIP.String()+":"+b.HostPort+"->"+port.String())
		}
	}
	slices.Sort(in.Ports) // map order: without the sort, two published ports would hash differently run to run
	for _, m := range h.Mounts {
		in.Mounts = append(in.Mounts, fmt.Sprintf("%s:%s:%s:ro=%t", m.Type, m.Source, m.Target, m.ReadOnly))
	}
	if c.StopTimeout != nil {
		in.StopTimeout = *c.StopTimeout
	}
	b, err := json.Marshal(in) // maps marshal with sorted keys: the hash is stable
	if err != nil {
		panic(fmt.Sprintf("container spec hash: %v", err)) // strings, slices and maps of strings always encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// secretEnvName matches variable names that hold secrets by convention.
var secretEnvName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|_KEY$|^KEY$|DATABASE_URL|_DSN$)`)

// secretEnv tells whether a variable's value must stay out of the hash: by its name, or because the value is
// a URL with credentials in it (a 1.x DATABASE_URL, a chain client URL with user:password).
func secretEnv(name, value string) bool {
	if secretEnvName.MatchString(name) {
		return true
	}
	if strings.Contains(value, "://") && strings.Contains(value, "@") {
		return true
	}
	u, err := url.Parse(value)
	return err == nil && u.User != nil
}
