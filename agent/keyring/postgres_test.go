package keyring

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestCheckOnPostgres asks a real PostgreSQL, as the node's own (non-superuser) role, through the states a node's
// database goes through: not migrated, migrated without a key ring, a row without keys, a sealed key ring, a
// broken one.
func TestCheckOnPostgres(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, user, dbPassword := "keyring_"+testenv.RandomHex(4), "node_"+testenv.RandomHex(4), "node-Password-"+testenv.RandomHex(8)
	if err := pg.CreateDatabase(ctx, db, user, dbPassword); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.RoleURL(db, user, dbPassword))
	if err != nil {
		t.Fatalf("connect as the node's role: %v", err)
	}
	defer conn.Close(context.Background())
	sealed := marshal(t, seal(t, right, fastN, DefaultR, DefaultP))

	for _, st := range []struct {
		name string
		sql  string
		args []any
		want map[string]Verdict // password → verdict; nil: wantErr
		err  error
	}{
		{name: "NotMigratedYet", want: map[string]Verdict{right: Empty, wrong: Empty, "": Empty}},
		{
			// The table as the node's migration 0060 makes it.
			name: "MigratedNoKeyRing",
			sql:  "CREATE TABLE encrypted_key_rings (encrypted_keys jsonb, updated_at timestamptz NOT NULL)",
			want: map[string]Verdict{right: Empty, wrong: Empty},
		},
		{
			// What the node's getEncryptedKeyRing inserts at its first unlock, before it saves a key.
			name: "RowWithoutKeys",
			sql:  "INSERT INTO encrypted_key_rings (encrypted_keys, updated_at) VALUES (NULL, NOW())",
			want: map[string]Verdict{right: Opens, wrong: Opens, "": DoesNotOpen},
		},
		{
			// As the node's saveEncryptedKeyRing writes it.
			name: "KeyRingSaved",
			sql:  "UPDATE encrypted_key_rings SET encrypted_keys = $1",
			args: []any{string(sealed)},
			want: map[string]Verdict{right: Opens, wrong: DoesNotOpen, "": DoesNotOpen},
		},
		{
			name: "KeyRingBroken",
			sql:  "UPDATE encrypted_key_rings SET encrypted_keys = $1",
			args: []any{`{"cipher": "aes-128-ctr", "kdf": "scrypt"}`},
			err:  ErrMalformed,
		},
	} {
		if st.sql != "" {
			if _, err := conn.Exec(ctx, st.sql, st.args...); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		if st.err != nil {
			if v, err := Check(ctx, conn, right); !errors.Is(err, st.err) || v != 0 {
				t.Errorf("%s: Check = %s, %v; want no verdict and %v", st.name, v, err, st.err)
			}
			continue
		}
		for password, want := range st.want {
			if got, err := Check(ctx, conn, password); err != nil || got != want {
				t.Errorf("%s: Check(%s) = %s, %v; want %s", st.name, which(password), got, err, want)
			}
		}
	}

	conn.Close(ctx)
	if v, err := Check(ctx, conn, right); err == nil || v != 0 || !strings.Contains(err.Error(), Table) {
		t.Errorf("a closed session: Check = %s, %v; want no verdict and an error naming the table", v, err)
	}
}

// which names a test password without printing it.
func which(password string) string {
	switch password {
	case right:
		return "the sealing password"
	case wrong:
		return "another password"
	case "":
		return "the empty password"
	}
	return fmt.Sprintf("a %d-byte password", len(password))
}
