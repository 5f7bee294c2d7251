package testenv

import (
	"strings"
	"testing"
)

func TestPostgresOptions(t *testing.T) {
	t.Parallel()
	o, err := newPGOptions([]PostgresOption{ExtraListen("10.211.7.1", "10.211.7.0/30"), ExtraListen("10.211.8.1", "10.211.8.1/30")})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.listenAddrs(); got != ",10.211.7.1,10.211.8.1" {
		t.Errorf("listenAddrs = %q", got)
	}
	hba := o.hbaLines()
	for _, want := range []string{"host  all all 10.211.7.0/30 ", "host  all all 10.211.8.0/30 "} {
		if !strings.Contains(hba, want) || !strings.Contains(hba, "scram-sha-256") {
			t.Errorf("hba lines %q lack %q with scram-sha-256", hba, want)
		}
	}
	if ips := o.certIPs(); len(ips) != 2 || ips[0].String() != "10.211.7.1" {
		t.Errorf("certIPs = %v", ips)
	}
	for _, bad := range []PostgresOption{ExtraListen("not-an-ip", "10.0.0.0/8"), ExtraListen("10.0.0.1", "10.0.0.1")} {
		if _, err := newPGOptions([]PostgresOption{bad}); err == nil {
			t.Error("a malformed ExtraListen was accepted")
		}
	}
	if o, err := newPGOptions(nil); err != nil || o.listenAddrs() != "" || o.hbaLines() != "" {
		t.Errorf("no options: %+v, %v", o, err)
	}
}
