package testenv

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// PostgresOption changes how StartPostgres and PostgresT set a cluster up. With none, the cluster listens on
// 127.0.0.1 and the docker bridge gateway only.
type PostgresOption func(*pgOptions)

type pgOptions struct {
	extra []pgListen
}

// pgListen is one more address the postmaster listens on and the network allowed to connect through it.
type pgListen struct {
	rawAddr, rawCIDR string
	addr             netip.Addr
	cidr             netip.Prefix
}

// ExtraListen makes the cluster also listen on addr (which must already be assigned to an interface of this host,
// e.g. the root end of a network-namespace veth) and accept scram-sha-256 logins from cidr. The server certificate
// names addr too, so sslmode=verify-full works through it. A malformed addr or cidr fails the start.
func ExtraListen(addr, cidr string) PostgresOption {
	return func(o *pgOptions) { o.extra = append(o.extra, pgListen{rawAddr: addr, rawCIDR: cidr}) }
}

func newPGOptions(opts []PostgresOption) (pgOptions, error) {
	var o pgOptions
	for _, opt := range opts {
		opt(&o)
	}
	for i, l := range o.extra {
		var err error
		if o.extra[i].addr, err = netip.ParseAddr(l.rawAddr); err != nil {
			return o, fmt.Errorf("postgres: ExtraListen address: %w", err)
		}
		if o.extra[i].cidr, err = netip.ParsePrefix(l.rawCIDR); err != nil {
			return o, fmt.Errorf("postgres: ExtraListen network: %w", err)
		}
	}
	return o, nil
}

// listenAddrs is the extra part of listen_addresses (a leading comma when there is any).
func (o pgOptions) listenAddrs() string {
	var b strings.Builder
	for _, l := range o.extra {
		b.WriteString("," + l.addr.String())
	}
	return b.String()
}

// hbaLines are the pg_hba.conf lines for the extra networks.
func (o pgOptions) hbaLines() string {
	var b strings.Builder
	for _, l := range o.extra {
		fmt.Fprintf(&b, "host  all all %-14s scram-sha-256\n", l.cidr.Masked().String())
	}
	return b.String()
}

func (o pgOptions) certIPs() []net.IP {
	var ips []net.IP
	for _, l := range o.extra {
		ips = append(ips, net.IP(l.addr.AsSlice()))
	}
	return ips
}
