package standin

import (
	"context"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/pair"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// buildRelease builds r under a tag of the test's own (untagged at the end: the sha- tag keeps the image) and
// returns the tag.
func buildRelease(t *testing.T, ctx context.Context, r Release) string {
	t.Helper()
	tag := Repository + ":test-" + testenv.RandomHex(4)
	if err := BuildRelease(ctx, r, tag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", tag).Run() })
	return tag
}

func imageID(t *testing.T, ctx context.Context, image string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", image).Output()
	if err != nil {
		t.Fatalf("docker image inspect %s: %v", image, err)
	}
	return strings.TrimSpace(string(out))
}

// TestReleasesAreImagesOfTheirOwn: two releases are two images, each printing its version as the real node
// does; a variant of a release is a third; the same release built again is the same image, only tagged.
func TestReleasesAreImagesOfTheirOwn(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := buildRelease(t, ctx, Release{Version: "2.11.0"})
	b := buildRelease(t, ctx, Release{Version: "2.12.0"})
	broken := buildRelease(t, ctx, Release{Version: "2.12.0", NeverReady: true, RefuseKey: "Feature.LogPoller", MigrateTo: 300})
	again := buildRelease(t, ctx, Release{Version: "2.11.0"})
	ids := map[string]string{}
	for _, image := range []string{a, b, broken} {
		id := imageID(t, ctx, image)
		if other, ok := ids[id]; ok {
			t.Errorf("%s and %s are the same image %s", other, image, id)
		}
		ids[id] = image
	}
	if imageID(t, ctx, again) != imageID(t, ctx, a) {
		t.Errorf("the same release built twice gave two images")
	}
	checkImageConfig(t, ctx, broken)
	for image, want := range map[string]string{a: "2.11.0", b: "2.12.0", broken: "2.12.0"} {
		out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", image, "--version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != "chainlink version "+want+"@standin" {
			t.Errorf("%s --version = %q, %v; want %q", image, got, err, "chainlink version "+want+"@standin")
		}
	}
}

// TestNeverReadyRelease: the node of a never-ready release takes the lease and migrates as any other, and the
// agent's readiness probe (GET /readyz 200) never passes while it runs; docker stop still releases the lease.
func TestNeverReadyRelease(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	image := buildRelease(t, ctx, Release{Version: "2.13.0", NeverReady: true})
	db := newDatabase(t, pg)
	f := tomlFiles(t, db.url(pg.BridgeHost, secretsMount+"/ca.crt"), dataMount, 6688, 30*time.Second, time.Second)
	ownForNode(t, f, pg.CAFile)
	name := "cl-agent-standin-test-" + testenv.RandomHex(4)
	dockerRun(t, ctx, name, f, nil, nil, image, args2x(secretsMount)...)
	base := "http://" + hostPort(t, ctx, name)

	// Everything the node does before it would be ready is done once it says it never will be.
	var line map[string]any
	testenv.WaitFor(t, 30*time.Second, "the never-ready node to take the lease and give up on readiness", func() bool {
		line = findLog(containerLogs(t, ctx, name), "never becoming ready")
		return line != nil
	})
	acquired := findLog(containerLogs(t, ctx, name), "lease acquired")
	if acquired == nil {
		t.Fatal("no lease acquired line before never becoming ready")
	}
	conn := db.superuser(t)
	var holder string
	if err := conn.QueryRow(ctx, `SELECT client_id::text FROM lease_lock WHERE expires_at > NOW()`).Scan(&holder); err != nil || holder != acquired["clientID"] {
		t.Errorf("the lease is held by %q (%v); want the never-ready node %v", holder, err, acquired["clientID"])
	}
	if v := mustMigration(t, ctx, conn); v != 1 {
		t.Errorf("goose_migrations at %d; want the default migration 1", v)
	}
	if testenv.Poll(3*time.Second, 100*time.Millisecond, func() bool {
		return httpGet(base+"/readyz") == http.StatusOK || !containerRunning(t, ctx, name)
	}) {
		t.Fatalf("the never-ready node answered /readyz 200 or stopped (running %t)", containerRunning(t, ctx, name))
	}

	if out, err := exec.CommandContext(ctx, "docker", "stop", "-t", "10", name).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	if code := containerExitCode(t, ctx, name); code != 0 {
		t.Errorf("exit code after docker stop = %d; want 0", code)
	}
	var held bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM lease_lock WHERE expires_at > NOW())`).Scan(&held); err != nil || held {
		t.Errorf("lease still held after docker stop (%v)", err)
	}
}

// TestRefuseKeyRelease: a release that refuses a key config.toml has: validate and start exit 1 with the node's
// words naming it; without the key validate passes.
func TestRefuseKeyRelease(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	image := buildRelease(t, ctx, Release{Version: "2.14.0", RefuseKey: "Feature.LogPoller"})
	dbURL := (&url.URL{Scheme: "postgres", User: url.UserPassword("u", keystorePW), Host: "127.0.0.1:1", Path: "/x"}).String()
	run := func(t *testing.T, f nodeFiles, args ...string) (int, string) {
		t.Helper()
		name := "cl-agent-standin-test-" + testenv.RandomHex(4)
		dockerRun(t, ctx, name, f, nil, nil, image, args...)
		if out, err := exec.CommandContext(ctx, "docker", "wait", name).Output(); err != nil {
			t.Fatalf("docker wait: %v %s", err, out)
		}
		return containerExitCode(t, ctx, name), containerLogs(t, ctx, name)
	}
	validate := []string{"node", "-config", secretsMount + "/config.toml", "-secrets", secretsMount + "/secrets.toml", "validate"}

	// go-toml's quote of the line at fault, the key underlined.
	underlined := regexp.MustCompile(`\n *\d+\| LogPoller = true\n *\| ~{9} missing field\n`)
	f := tomlFiles(t, dbURL, dataMount, 6688, 10*time.Second, time.Second) // has [Feature] LogPoller = true
	ownForNode(t, f, "")
	for cmd, args := range map[string][]string{"validate": validate, "start": args2x(secretsMount)} {
		code, out := run(t, f, args...)
		if code != 1 || !strings.HasPrefix(out, "Error running app: failed to decode config TOML: ") ||
			!underlined.MatchString(out) {
			t.Errorf("%s with the refused key: exit %d\n%s", cmd, code, out)
		}
	}

	without := tomlFiles(t, dbURL, dataMount, 6688, 10*time.Second, time.Second)
	write(t, without.path("config.toml"), "RootDir = '"+dataMount+"'\n[Feature]\nFeedsManager = true\n")
	ownForNode(t, without, "")
	if code, out := run(t, without, validate...); code != 0 || !strings.Contains(out, "Valid configuration.") {
		t.Errorf("validate without the refused key: exit %d\n%s", code, out)
	}
}

// TestMigrateToRelease: a release with migrations records its version in the real node's goose_migrations (goose's
// columns, its initial version 0) before it is ready; an older release started afterwards changes nothing.
func TestMigrateToRelease(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	newer := buildRelease(t, ctx, Release{Version: "2.15.0", MigrateTo: 20240910})
	older := buildRelease(t, ctx, Release{Version: "2.14.0", MigrateTo: 195})
	db := newDatabase(t, pg)
	f := tomlFiles(t, db.url(pg.BridgeHost, secretsMount+"/ca.crt"), dataMount, 6688, 30*time.Second, time.Second)
	ownForNode(t, f, pg.CAFile)
	conn := db.superuser(t)
	for _, image := range []string{newer, older} {
		name := "cl-agent-standin-test-" + testenv.RandomHex(4)
		dockerRun(t, ctx, name, f, nil, nil, image, args2x(secretsMount)...)
		base := "http://" + hostPort(t, ctx, name)
		testenv.WaitFor(t, 30*time.Second, image+" to be ready", func() bool { return httpGet(base+"/readyz") == http.StatusOK })
		if out, err := exec.CommandContext(ctx, "docker", "stop", "-t", "10", name).CombinedOutput(); err != nil {
			t.Fatalf("docker stop: %v\n%s", err, out)
		}
		if v := mustMigration(t, ctx, conn); v != 20240910 {
			t.Errorf("after %s: goose_migrations at %d; want 20240910", image, v)
		}
	}

	rows, err := conn.Query(ctx, `SELECT column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns WHERE table_name = 'goose_migrations' ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	want := []string{"id integer NO nextval('goose_migrations_id_seq'::regclass)", "version_id bigint NO ",
		"is_applied boolean NO ", "tstamp timestamp without time zone YES now()"}
	if err != nil || strings.Join(cols, "\n") != strings.Join(want, "\n") {
		t.Errorf("goose_migrations columns (%v):\n%s\nwant:\n%s", err, strings.Join(cols, "\n"), strings.Join(want, "\n"))
	}
	rows, err = conn.Query(ctx, `SELECT version_id FROM goose_migrations WHERE is_applied ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(versions) != 2 || versions[0] != 0 || versions[1] != 20240910 {
		t.Errorf("applied versions %v (%v); want [0 20240910]", versions, err)
	}
}

func containerRunning(t *testing.T, ctx context.Context, name string) bool {
	t.Helper()
	return inspect(t, ctx, name, "{{.State.Running}}") == "true"
}

// mustMigration is the highest migration applied, as the agent reads it (agent/pair).
func mustMigration(t *testing.T, ctx context.Context, conn *pgx.Conn) int64 {
	t.Helper()
	v, err := pair.MigrationVersion(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
