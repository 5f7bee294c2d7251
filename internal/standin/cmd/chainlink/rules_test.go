package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestKeystoreStrengthOnlyForAnEmptyRing: as the real node (v2.19.0), the stand-in judges the keystore password's
// strength only when its key ring is empty; a ring an older node sealed with a weaker password opens with it, and
// a password of any length that is not the ring's is the node's refusal.
func TestKeystoreStrengthOnlyForAnEmptyRing(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := "standin_ring_" + testenv.RandomHex(4)
	if err := pg.CreateDatabase(ctx, db, "ring_"+testenv.RandomHex(4), "Ring-Owner-Password-"+testenv.RandomHex(8)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	const weak = "weak-Ks-9"
	if _, err := unlockKeyRing(ctx, conn, weak); !errors.Is(err, errTooShort) {
		t.Fatalf("an empty ring and a %d-byte password: %v; want %v", len(weak), err, errTooShort)
	}
	var rows int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM encrypted_key_rings`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the refused password sealed a ring: %d rows, %v", rows, err)
	}
	// An older node sealed the ring with the weak password.
	if _, err := conn.Exec(ctx, `INSERT INTO encrypted_key_rings (encrypted_keys, updated_at) VALUES (NULL, NOW())`); err != nil {
		t.Fatal(err)
	}
	if err := sealKeyRing(ctx, conn, weak, `UPDATE encrypted_key_rings SET encrypted_keys = $1, updated_at = NOW()`); err != nil {
		t.Fatal(err)
	}
	if sealed, err := unlockKeyRing(ctx, conn, weak); err != nil || sealed {
		t.Errorf("the ring sealed with a weak password: sealed %t, %v; want it opened", sealed, err)
	}
	if _, err := unlockKeyRing(ctx, conn, goodPW); !errors.Is(err, errKeyRingPassword) {
		t.Errorf("another (strong) password on that ring: %v; want %v", err, errKeyRingPassword)
	}
}

// TestAPIPasswordRulesOnlyForTheFirstUser: as the real node, .api's password is held to the node's rules only when
// it creates the first user (16..50 bytes; it may contain the e-mail: that rule is the web API's); once a user
// exists, a later .api is ignored whatever it holds.
func TestAPIPasswordRulesOnlyForTheFirstUser(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := "standin_users_" + testenv.RandomHex(4)
	if err := pg.CreateDatabase(ctx, db, "users_"+testenv.RandomHex(4), "Users-Owner-Password-"+testenv.RandomHex(8)); err != nil {
		t.Fatal(err)
	}
	dial, err := newDialer(pg.URL(db), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	u := &users{dial: dial}
	if _, err := u.seed(ctx, apiCredentials{Email: goodEmail, Password: "short"}); !errors.Is(err, errTooShort) {
		t.Fatalf("first user with a short password: %v; want %v", err, errTooShort)
	}
	withEmail := "xx" + goodEmail + "xx-0123456789"
	if created, err := u.seed(ctx, apiCredentials{Email: goodEmail, Password: withEmail}); err != nil || !created {
		t.Fatalf("first user with the e-mail in its password: created %t, %v; want created", created, err)
	}
	if created, err := u.seed(ctx, apiCredentials{Email: goodEmail, Password: "short"}); err != nil || created {
		t.Errorf("a later .api with a short password: created %t, %v; want it ignored", created, err)
	}
	if ok, err := u.check(ctx, goodEmail, withEmail); err != nil || !ok {
		t.Errorf("the first user's password no longer logs in: %t, %v", ok, err)
	}
}
