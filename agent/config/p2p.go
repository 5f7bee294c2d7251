package config

import (
	"bytes"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultP2PPort is the node's customary P2P.V2 port.
const DefaultP2PPort = 6690

// nodeHTTPPort is the node's HTTP port inside its container (package nodefiles' NodePort).
const nodeHTTPPort = 6688

// P2P is the node's P2P.V2 networking (libocr's ragep2p: TCP only). Rendered as [P2P.V2]; off renders
// Enabled = false, so extra_toml cannot switch it on behind the agent's back.
type P2P struct {
	// Enabled turns P2P.V2 on: the node listens on ListenPort and the container publishes it (TCP). Default false.
	Enabled bool `yaml:"enabled"`
	// ListenPort is the port the node listens on (0.0.0.0:<port> in its container) and the host publishes.
	// Default 6690.
	ListenPort int `yaml:"listen_port"`
	// Announce is the "ip:port" peers dial, the same on both hosts of a pair (the template's load balancer address).
	// Required when enabled. libocr refuses host names here: an announcement carries an IP literal.
	Announce string `yaml:"announce"`
	// Bootstrappers are "peerID@host:port" (more addresses after "/": "peerID@h1:p1/h2:p2"), the DON's bootstrap
	// nodes; the peer ID is the raw base58 form ("12D3KooW…"), without the "p2p_" prefix the operator UI shows.
	Bootstrappers []string `yaml:"bootstrappers"`
}

// p2p applies the node's P2P.V2 rules to node.p2p (chainlink v2.19.0 and its libocr v0.0.0-20241007185508):
//   - announce: an IP literal and a port, no IPv6 zone (libocr networking/ragedisco/address.go:105-129
//     parseAddrPortForAnnouncement: the node only logs a bad one at start and then announces nothing); the agent
//     also refuses 0.0.0.0 / :: (which libocr would replace with this host's own interface addresses, different on
//     each host of the pair) and port 0;
//   - bootstrappers: PeerID@addr[/addr…] (libocr commontypes/types.go:56 UnmarshalText, a config decoding error),
//     the peer ID base58 of 0x00 0x24 0x08 0x01 0x12 0x20 + a 32-byte key (ragep2p/types/types.go:44-73), each
//     address host:port (net.SplitHostPort, types.go:35), the port 1–65535 (net.Dial's);
//   - OCR or OCR2 enabled needs P2P.V2 enabled (core/config/toml/types.go:108): checked on extra_toml, which is
//     where those switches live, since the agent writes P2P.V2.Enabled itself.
//
// listen_port is also checked against the other ports of the host and container (container.host_port,
// health.listen, the node's 6688).
func (v *validator) p2p(c *Config) {
	p := c.Node.P2P
	if !p.Enabled {
		if p.Announce != "" {
			v.fail("node.p2p.announce", p.Announce, detail(ErrInvalid, "is set but node.p2p.enabled is false"))
		}
		if len(p.Bootstrappers) > 0 {
			v.fail("node.p2p.bootstrappers", "", detail(ErrInvalid, "are set but node.p2p.enabled is false"))
		}
		for _, key := range ocrEnabled(c.Node.ExtraTOML) {
			v.fail("node.extra_toml", "", detail(ErrInvalid, "%s = true needs P2P: set node.p2p.enabled (the node refuses OCR and OCR2 without P2P.V2)", key))
		}
		return
	}
	if c.Node.Format == "env" {
		v.fail("node.p2p.enabled", "true", detail(ErrInvalid, "node.format env (1.x) has no P2P.V2 settings; P2P needs toml (2.x)"))
	}
	v.port("node.p2p.listen_port", p.ListenPort)
	port := strconv.Itoa(p.ListenPort)
	_, healthPort, _ := net.SplitHostPort(c.Health.Listen)
	switch {
	case p.ListenPort == nodeHTTPPort:
		v.fail("node.p2p.listen_port", port, detail(ErrInvalid, "is the node's HTTP port inside its container"))
	case p.ListenPort == c.Container.HostPort:
		v.fail("node.p2p.listen_port", port, detail(ErrInvalid, "container.host_port publishes the node's HTTP port on this port already"))
	case port == healthPort:
		v.fail("node.p2p.listen_port", port, detail(ErrInvalid, "health.listen uses this port on the host"))
	}
	if v.required("node.p2p.announce", p.Announce) {
		if err := CheckAnnounce(p.Announce); err != nil {
			v.fail("node.p2p.announce", p.Announce, err)
		}
	}
	for i, b := range p.Bootstrappers {
		if err := CheckBootstrapper(b); err != nil {
			v.fail(fmt.Sprintf("node.p2p.bootstrappers[%d]", i), b, err)
		}
	}
}

// CheckAnnounce applies libocr's rule for an announce address (an IP literal and a port, no zone) and the agent's
// (a specified address and a port from 1 to 65535, so both hosts announce the same reachable address).
func CheckAnnounce(s string) error {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		return detail(ErrInvalid, "must be ip:port such as 203.0.113.7:6690 ([v6]:port for IPv6); peers get it in signed announcements, which carry an IP literal, never a host name")
	case ap.Addr().Zone() != "":
		return detail(ErrInvalid, "an IPv6 zone is not allowed in an announced address")
	case ap.Addr().IsUnspecified():
		return detail(ErrInvalid, "0.0.0.0 or :: would announce each host's own interface addresses; give the one address peers dial, the same on both hosts (the load balancer's)")
	case ap.Port() == 0:
		return detail(ErrOutOfRange, "the port must be from 1 to 65535")
	}
	return nil
}

// CheckBootstrapper applies libocr's BootstrapperLocator rules to "peerID@host:port[/host:port…]", plus a port
// range and at least one address.
func CheckBootstrapper(s string) error {
	peerID, addrs, ok := strings.Cut(s, "@")
	if !ok || strings.Contains(addrs, "@") {
		return detail(ErrInvalid, "must be peerID@host:port (more addresses after /: peerID@h1:p1/h2:p2)")
	}
	if err := CheckPeerID(peerID); err != nil {
		return err
	}
	if addrs == "" {
		return detail(ErrInvalid, "names no address: peerID@host:port")
	}
	for _, a := range strings.Split(addrs, "/") {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return detail(ErrInvalid, "address %q must be host:port", a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return detail(ErrOutOfRange, "address %q: the port must be from 1 to 65535", a)
		}
	}
	return nil
}

// peerIDMagic prefixes the 32-byte key in a libp2p-style Ed25519 peer ID (libocr ragep2p/types/types.go:53).
var peerIDMagic = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// CheckPeerID applies libocr's PeerID.UnmarshalText: base58 (Bitcoin alphabet) of the magic and a 32-byte key.
func CheckPeerID(s string) error {
	if strings.HasPrefix(s, "p2p_") {
		return detail(ErrInvalid, "peer ID %q: drop the p2p_ prefix (the node takes the raw base58 form, 12D3KooW…)", s)
	}
	b, ok := base58Decode(s)
	if !ok || len(b) != len(peerIDMagic)+32 || !bytes.HasPrefix(b, peerIDMagic) {
		return detail(ErrInvalid, "peer ID %q is not a libp2p Ed25519 peer ID (base58, 12D3KooW… and 52 characters)", s)
	}
	return nil
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58Decode decodes Bitcoin-alphabet base58; each leading '1' is a leading zero byte.
func base58Decode(s string) ([]byte, bool) {
	if s == "" {
		return nil, false
	}
	n, radix := new(big.Int), big.NewInt(58)
	for _, r := range s {
		i := strings.IndexRune(base58Alphabet, r)
		if i < 0 {
			return nil, false
		}
		n.Mul(n, radix).Add(n, big.NewInt(int64(i)))
	}
	zeros := len(s) - len(strings.TrimLeft(s, "1"))
	return append(make([]byte, zeros), n.Bytes()...), true
}
