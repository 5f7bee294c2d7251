package secrets

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestKeystoreEmpty asks a real PostgreSQL the node's question, through the states a node's database goes through.
func TestKeystoreEmpty(t *testing.T) {
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pg.CreateDatabase(ctx, "keyring", "node_user", "node-Password-0123456789"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.URL("keyring"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	c := testConfig(t)
	weak := testSecrets()
	weak.KeystorePassword = NewSecret("weak", "v")

	steps := []struct {
		name      string
		sql       string
		wantEmpty bool
	}{
		{"NotMigratedYet", "", true},
		{"MigratedNoKeyRing", "CREATE TABLE encrypted_key_rings (encrypted_keys jsonb, updated_at timestamptz NOT NULL)", true},
		{"KeyRingMade", "INSERT INTO encrypted_key_rings (encrypted_keys, updated_at) VALUES (NULL, NOW())", false},
	}
	for _, st := range steps {
		if st.sql != "" {
			if _, err := conn.Exec(ctx, st.sql); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		empty, err := KeystoreEmpty(ctx, conn)
		if err != nil || empty != st.wantEmpty {
			t.Fatalf("%s: KeystoreEmpty = %t, %v; want %t", st.name, empty, err, st.wantEmpty)
		}
		err = CheckKeystore(ctx, conn, c, weak)
		var se *Error
		if st.wantEmpty && (!errors.As(err, &se) || se.Key != "keystore_password" || se.ID != "WalletSecret" || se.ExitCode() != 5 ||
			!strings.Contains(err.Error(), "keystore is empty")) {
			t.Errorf("%s: a weak password for an empty keystore: got %v", st.name, err)
		}
		if !st.wantEmpty && err != nil {
			t.Errorf("%s: a weak password bound to an existing key ring must pass: %v", st.name, err)
		}
		if err := CheckKeystore(ctx, conn, c, testSecrets()); err != nil {
			t.Errorf("%s: a strong password: %v", st.name, err)
		}
	}

	conn.Close(ctx)
	if _, err := KeystoreEmpty(ctx, conn); err == nil || !strings.Contains(err.Error(), "encrypted_key_rings") {
		t.Errorf("a closed session: got %v, want an error naming the table", err)
	}
}
