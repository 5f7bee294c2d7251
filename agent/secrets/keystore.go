package secrets

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cl-agent/cl-agent/agent/config"
)

// KeyRingTable is where the node keeps its encrypted key ring (chainlink v2.19.0: created by migration
// core/store/migrate/migrations/0060_combine_keys_tables.sql, counted by core/services/keystore/orm.go isEmpty).
const KeyRingTable = "encrypted_key_rings"

// RowQuerier is the one call KeystoreEmpty makes; *pgx.Conn, *pgxpool.Pool and pgx.Tx have it.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// KeystoreEmpty reports whether the node's keystore is empty, the fact CheckKeystorePassword needs, the way the node
// decides it: no row in encrypted_key_rings. db must be a session on the node's database as the node's user (the
// table is found through the same search_path); a database the node has not migrated yet has no such table, which
// is empty too. ctx bounds the query.
func KeystoreEmpty(ctx context.Context, db RowQuerier) (bool, error) {
	var n int64
	err := db.QueryRow(ctx, "SELECT count(*) FROM "+KeyRingTable).Scan(&n)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table: the node has not run its migrations
		return true, nil
	case err != nil:
		return false, fmt.Errorf("count the node's key rings (%s): %w", KeyRingTable, err)
	}
	return n == 0, nil
}

// CheckKeystore is the keystore check to run before each start of the node, once the node's database can be
// reached (the active holds a session on it): KeystoreEmpty on db, then CheckKeystorePassword with that fact. A
// password that breaks the rule is a terminal *Error (exit 5) naming keystore_password and its id; a failed
// query is returned as it is (worth retrying).
func CheckKeystore(ctx context.Context, db RowQuerier, c *config.Config, s NodeSecrets) error {
	empty, err := KeystoreEmpty(ctx, db)
	if err != nil {
		return err
	}
	if err := CheckKeystorePassword(s.KeystorePassword.Reveal(), empty); err != nil {
		return &Error{Key: "keystore_password", ID: c.Secrets.KeystorePassword.ID, Terminal: true, Err: err}
	}
	return nil
}
