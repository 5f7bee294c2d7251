package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Helpers of TestStandinHonoursTheNodeContract (contract_test.go): database and HTTP observations, the comparison.

var wholeNumber = regexp.MustCompile(`^[0-9]+$`)

func balanceShape(v any) string {
	switch b := v.(type) {
	case nil:
		return "null"
	case string:
		if wholeNumber.MatchString(b) {
			return "wei"
		}
	}
	return fmt.Sprintf("%T %v", v, v)
}

// session is one of the sessions of the node's role in its database.
type session struct{ name, addr string }

// nodeSessions reads the node role's sessions in its database: application_name and client address.
func nodeSessions(t *testing.T, ctx context.Context, db *pgx.Conn, s *realnode.Setup) []session {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT application_name, coalesce(host(client_addr), '') FROM pg_stat_activity
WHERE datname = $1 AND usename = $2`, s.Config.Node.Database.Name, s.Config.Node.Database.User)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (session, error) {
		var x session
		return x, r.Scan(&x.name, &x.addr)
	})
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	return out
}

// consumerIDs looks at the sessions from addr: the distinct uuids their names carry, whether every one is named as
// a node's (and there is one), and the version in the names. A name that is not a node's is logged once.
func consumerIDs(t *testing.T, sessions []session, addr string) (ids []string, named bool, version string) {
	t.Helper()
	seen, all := 0, true
	logged := map[string]bool{}
	for _, x := range sessions {
		if x.addr != addr {
			continue
		}
		seen++
		m := consumerNameRE.FindStringSubmatch(x.name)
		if m == nil {
			if !logged[x.name] {
				t.Logf("a session of the node at %s is named %q, not as a node's", addr, x.name)
				logged[x.name] = true
			}
			all = false
			continue
		}
		version = m[1]
		if !slices.Contains(ids, m[2]) {
			ids = append(ids, m[2])
		}
	}
	return ids, seen > 0 && all, version
}

// leaseHolder is lease_lock's client_id and expires_at ("" when there is no row).
func leaseHolder(t *testing.T, ctx context.Context, db *pgx.Conn) (string, time.Time) {
	t.Helper()
	var id string
	var expires time.Time
	err := db.QueryRow(ctx, `SELECT client_id::text, expires_at FROM lease_lock`).Scan(&id, &expires)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("lease_lock: %v", err)
	}
	return id, expires
}

// imageVersion is the version `chainlink --version` prints ("chainlink version 2.19.0@d7b5f7b…").
func imageVersion(t *testing.T, image string) string {
	t.Helper()
	out := realnode.ImageVersion(t, image)
	m := regexp.MustCompile(`version (\S+?)@`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s --version printed %q", image, out)
	}
	return m[1]
}

// startWith starts the node of s on its data directory with its files rendered again from sec.
func startWith(t *testing.T, image string, s *realnode.Setup, sec secrets.NodeSecrets) *realnode.Node {
	t.Helper()
	r, err := nodefiles.Render(s.Config, s.Identity, sec, nodefiles.FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	files := s.Files
	files.SecretsDir = filepath.Join(t.TempDir(), "node-secrets-again")
	if err := nodefiles.Write(files.SecretsDir, r, nodefiles.Owner(s.Config.Container)); err != nil {
		t.Fatal(err)
	}
	return realnode.Start(t, image, files, r.Cmd)
}

// loginStatus is the status of POST /sessions with these credentials.
func loginStatus(t *testing.T, ctx context.Context, base, email, password string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/sessions", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST /sessions: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// modelChain asks the stand-in to model its chain client (standin-dial-chain in its data directory): by default it
// counts an unreachable chain as connected. The real node does not read the file; it is written for both, so the
// two get the same inputs.
func modelChain(t *testing.T, dataDir string) {
	t.Helper()
	path := filepath.Join(dataDir, "standin-dial-chain")
	if err := os.WriteFile(path, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, realnode.UID, realnode.GID); err != nil {
		t.Fatal(err)
	}
}

// standinImage builds the stand-in's image from this tree (re-tagged when it is built already).
func standinImage(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ref := standin.Repository + ":contract"
	if err := standin.BuildImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

func superConn(t *testing.T, ctx context.Context, pg *testenv.Postgres, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.URL(db))
	if err != nil {
		t.Fatalf("connect to %s as superuser: %v", db, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// diffFacts lists the fields of a and b that differ, one line each.
func diffFacts(a, b contractFacts) []string {
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range av.NumField() {
		if x, y := av.Field(i).Interface(), bv.Field(i).Interface(); !reflect.DeepEqual(x, y) {
			out = append(out, fmt.Sprintf("  %-28s %#v ≠ %#v", av.Type().Field(i).Name, x, y))
		}
	}
	return out
}

func keysOf(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// set is the sorted, de-duplicated values, comma-separated.
func set(values []string) string {
	slices.Sort(values)
	return strings.Join(slices.Compact(values), ",")
}
