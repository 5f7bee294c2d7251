package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// TestPairImageVerdict: the image the configuration chooses passes when the pair has no record yet, when it is the
// image the pair runs (even below the highest release: a downgrade done on purpose), when it is no older than the
// highest release, and when its tag is no release; an older release fails with the DowngradeError (exit 5), unless
// allowed for this run. Each line says what the pair runs.
func TestPairImageVerdict(t *testing.T) {
	t.Parallel()
	img := func(tag string) image.Image { return image.Image{Repository: "smartcontract/chainlink", Tag: tag} }
	rec := func(tag, highest string) pair.Record {
		return pair.Record{Exists: true, Image: image.Image{Repository: "smartcontract/chainlink", Tag: tag, Digest: digestA}, Highest: highest}
	}
	runs := "the pair runs smartcontract/chainlink:2.19.0@" + digestA
	cases := []struct {
		name  string
		rec   pair.Record
		img   image.Image
		allow bool
		code  int
		says  []string
	}{
		{"ANewPair", pair.Record{}, img("2.18.0"), false, 0, []string{"not a downgrade: no image recorded yet (a new pair); 2.18.0 would be its first"}},
		{"ThePairsOwnImage", rec("2.19.0", "2.19.0"), img("2.19.0"), false, 0, []string{"not a downgrade: " + runs + ", highest release 2.19.0"}},
		{"ThePairsOwnImageBelowTheHighest", rec("2.19.0", "2.20.0"), img("2.19.0"), false, 0, []string{"not a downgrade", "highest release 2.20.0"}},
		{"ANewerRelease", rec("2.19.0", "2.19.0"), img("2.20.0"), false, 0, []string{"not a downgrade: 2.20.0; " + runs}},
		{"ATagThatIsNoRelease", rec("2.19.0", "2.19.0"), img("develop"), false, 0, []string{"not a downgrade: develop"}},
		{"NoReleaseRanYet", rec("develop", ""), img("2.1.0"), false, 0, []string{"highest release none"}},
		{"AnOlderReleaseIsRefused", rec("2.19.0", "2.19.0"), img("2.18.0"), false, exitcode.Terminal,
			[]string{"image 2.18.0 is older than 2.19.0", "--allow-downgrade", "(" + runs + ")"}},
		{"AllowedForThisRun", rec("2.19.0", "2.19.0"), img("2.18.0"), true, 0,
			[]string{"downgrade allowed for this run (--allow-downgrade): 2.18.0 is older than 2.19.0", runs,
				"`cl-agent upgrade --to 2.18.0 --allow-downgrade`"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			detail, err := pairImageVerdict(tc.rec, tc.img, tc.allow)
			if exitcode.Of(err) != tc.code {
				t.Fatalf("err %v (exit %d); want exit %d", err, exitcode.Of(err), tc.code)
			}
			var de *pair.DowngradeError
			if tc.code != 0 && !errors.As(err, &de) {
				t.Errorf("%v is no *pair.DowngradeError", err)
			}
			text := detail
			if err != nil {
				text = err.Error()
			}
			for _, s := range tc.says {
				if !strings.Contains(text, s) {
					t.Errorf("%q does not say %q", text, s)
				}
			}
		})
	}
}

// nodeConn connects to database db of the fixture as the node's user (who owns the pair's table, as the daemon
// creates it).
func nodeConn(t *testing.T, ctx context.Context, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, fx.pg.RoleURL(db, dbUser, dbPassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestCheckPairImageAgainstPostgres: the pair-image line reads the record from a real PostgreSQL as the node's
// user; a database where no agent ran yet is a new pair; an older pinned image.tag fails with exit 5 and passes
// with --allow-downgrade; an unpinned configuration whose resolution failed is skipped; an unreachable database
// fails worth retrying.
func TestCheckPairImageAgainstPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The cases run one after the other: each creates its database, and CreateDatabase alters the shared role.
	cases := []struct {
		name     string
		recorded string // the tag the pair's record holds ("" no record)
		pinned   string // image.tag
		known    bool   // the image line resolved it
		allow    bool
		port     int // 0: the fixture's
		line     string
		worst    int
	}{
		{"ANewPair", "", "2.18.0", true, false, 0, "ok    pair-image not a downgrade: no image recorded yet (a new pair)", 0},
		{"APinnedNewerRelease", "2.19.0", "2.20.0", true, false, 0, "ok    pair-image not a downgrade: 2.20.0; the pair runs smartcontract/chainlink:2.19.0@", 0},
		{"APinnedOlderRelease", "2.19.0", "2.18.0", false, false, 0, "FAIL  pair-image image 2.18.0 is older than 2.19.0", exitcode.Terminal},
		{"APinnedOlderReleaseAllowed", "2.19.0", "2.18.0", true, true, 0, "ok    pair-image downgrade allowed for this run", 0},
		{"UnpinnedUnresolved", "2.19.0", "", false, false, 0, "skip  pair-image needs the image check", 0},
		{"AnUnreachableDatabase", "", "2.18.0", true, false, 1, "FAIL  pair-image connect to ", exitcode.Retry},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := fmt.Sprintf("check_pair_%d", i)
			if err := fx.pg.CreateDatabase(ctx, db, dbUser, dbPassword); err != nil {
				t.Fatal(err)
			}
			if tc.recorded != "" {
				recorded := image.Image{Repository: "smartcontract/chainlink", Tag: tc.recorded, Digest: digestA}
				if _, err := pair.RecordRunning(ctx, nodeConn(t, ctx, db), recorded, "i-0a"); err != nil {
					t.Fatal(err)
				}
			}
			port := fx.pg.Port
			if tc.port != 0 {
				port = tc.port
			}
			c := &config.Config{
				Node:  config.Node{Database: config.Database{Host: fx.pg.Host, Port: port, Name: db, User: dbUser, SSLMode: "require"}},
				Image: config.Image{Repository: "smartcontract/chainlink", Tag: tc.pinned},
			}
			img := image.Image{Repository: c.Image.Repository, Tag: tc.pinned, Digest: digestB}
			var out strings.Builder
			r := &checkReport{out: &out}
			r.pairImage(ctx, c, secrets.NewSecret(dbPassword, "v1"), img, tc.known, tc.allow)
			if !strings.HasPrefix(out.String(), tc.line) || r.worst != tc.worst {
				t.Errorf("worst exit %d, want %d; line:\n%s\nwant it to begin %q", r.worst, tc.worst, out.String(), tc.line)
			}
			assertNoSecret(t, "the pair-image line", out.String())
		})
	}
}

// TestCheckRefusesADowngrade: `cl-agent check` with image.tag older than the highest release recorded in the
// database prints the pair-image FAIL line and exits 5; --allow-downgrade passes the line.
func TestCheckRefusesADowngrade(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const db = "check_pair_cli"
	if err := fx.pg.CreateDatabase(ctx, db, dbUser, dbPassword); err != nil {
		t.Fatal(err)
	}
	recorded := image.Image{Repository: "standin-chainlink", Tag: "2.11.0", Digest: digestA}
	if _, err := pair.RecordRunning(ctx, nodeConn(t, ctx, db), recorded, "i-0a"); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "toml", fmt.Sprintf("  database: {host: 127.0.0.1, port: %d, name: %s, user: '%s', sslmode: verify-full, sslrootcert: %s}",
		fx.pg.Port, db, dbUser, fx.pg.CAFile)) // image.tag 2.10.0
	code, stdout, stderr := cli(t, "check", "--config", cfg)
	if code != exitcode.Terminal || !strings.Contains(stdout, "FAIL  pair-image image 2.10.0 is older than 2.11.0") {
		t.Errorf("exit %d, want 5 with the pair-image FAIL line:\n%s\n%s", code, stdout, stderr)
	}
	_, stdout, stderr = cli(t, "check", "--allow-downgrade", "--config", cfg)
	if !strings.Contains(stdout, "ok    pair-image downgrade allowed for this run (--allow-downgrade): 2.10.0 is older than 2.11.0") {
		t.Errorf("--allow-downgrade does not pass the pair-image line:\n%s\n%s", stdout, stderr)
	}
}
