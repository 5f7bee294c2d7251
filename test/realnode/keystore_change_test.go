package realnode

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/keyring"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// addressRE is an EVM address as the node's CLI prints it.
var addressRE = regexp.MustCompile(`0x[0-9a-fA-F]{40}`)

// TestKeystorePasswordChangeByExportImport runs the README's "Rotating the keystore password" on the real node,
// step by step with the node's own CLI inside its container: export the node's ETH key under an export password,
// stop the node, empty the key ring, start it with a new keystore password (a new ring), import the key. The
// imported address is the node's again (the key the node made on the new ring deleted), the new password opens the
// ring and the old one no longer does, and the node starts again on the new password with the key.
func TestKeystorePasswordChangeByExportImport(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	s := realnode.Render(t, pg)
	oldPassword := s.Secrets.KeystorePassword.Reveal()
	newPassword := "keystore-New-P@ssword-" + testenv.RandomHex(8) // the ring will be empty: the strength rule applies
	exportPassword := "export-P@ssword-" + testenv.RandomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	db := nodeSession(t, ctx, pg, s)

	// Steps 1–2: log in, find the key, export it under the export password, to the data directory.
	node := realnode.Start(t, image, s.Files, s.Cmd)
	node.WaitReady(readyBound)
	address := nodeETHKey(t, node.URL, s.Config.Node.APIEmail, s.Secrets.APIPassword.Reveal())
	cli := func(n *realnode.Node, stdin string, args ...string) string {
		t.Helper()
		out, err := n.Exec(stdin, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cli(node, "", "chainlink", "admin", "login", "-f", "/run/chainlink/.api")
	cli(node, exportPassword, "sh", "-c", "umask 077 && cat > /chainlink/export.pw")
	cli(node, "", "chainlink", "keys", "eth", "export", address, "-p", "/chainlink/export.pw", "-o", "/chainlink/export-eth.json")
	if out := cli(node, "", "cat", "/chainlink/export-eth.json"); !strings.Contains(strings.ToLower(out), strings.ToLower(address[2:])) ||
		strings.Contains(out, oldPassword) || strings.Contains(out, exportPassword) {
		t.Fatalf("the export is not the key's encrypted JSON: %.200s", out)
	}

	// Steps 3–4: stop the node, empty the key ring.
	// The node keeps each ETH key's state per chain apart from the ring (evm.key_states, which no other table
	// references in v2.19.0): left behind, the import fails on its unique (chain, address) index.
	node.Stop()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{keyring.Table, "evm.key_states"} {
		if _, err := tx.Exec(ctx, "DELETE FROM "+table); err != nil {
			t.Fatalf("empty %s: %v", table, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// Steps 5–7: the node on the new password makes a new ring; import the key into it.
	renewed := startWithKeystorePassword(t, image, s, newPassword)
	renewed.WaitReady(readyBound)
	cli(renewed, "", "chainlink", "admin", "login", "-f", "/run/chainlink/.api")
	made := addressRE.FindAllString(cli(renewed, "", "chainlink", "keys", "eth", "list"), -1)
	t.Logf("the node on a new key ring made ETH keys %v at boot", made)
	cli(renewed, "", "chainlink", "keys", "eth", "import", "/chainlink/export-eth.json", "-p", "/chainlink/export.pw", "--evm-chain-id", "1")
	for _, a := range made { // the README's step 7: the keys the node made on the new ring go
		if !strings.EqualFold(a, address) {
			cli(renewed, "", "chainlink", "keys", "eth", "delete", a, "--yes")
		}
	}
	if left := addressRE.FindAllString(cli(renewed, "", "chainlink", "keys", "eth", "list"), -1); len(left) != 1 || !strings.EqualFold(left[0], address) {
		t.Errorf("the node's ETH keys after the import and the deletes: %v; want only %s", left, address)
	}
	cli(renewed, "", "rm", "-f", "/chainlink/export.pw", "/chainlink/export-eth.json")
	for password, want := range map[string]keyring.Verdict{newPassword: keyring.Opens, oldPassword: keyring.DoesNotOpen} {
		if got, err := keyring.Check(ctx, db, password); err != nil || got != want {
			t.Errorf("after the import: Check = %s, %v; want %s", got, err, want)
		}
	}

	// And the node starts again on the new password, with the key.
	renewed.Stop()
	again := startWithKeystorePassword(t, image, s, newPassword)
	t.Logf("the node on the new keystore password, key %s imported: ready in %s", address, again.WaitReady(readyBound).Round(time.Millisecond))
	if got := nodeETHKey(t, again.URL, s.Config.Node.APIEmail, s.Secrets.APIPassword.Reveal()); got == "" {
		t.Error("no ETH key after the restart")
	}
}
