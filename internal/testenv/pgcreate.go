package testenv

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const createDatabaseTimeout = 30 * time.Second

// createRoleLock is the advisory lock key (in the postgres database) that serializes CreateDatabase's role statement.
const createRoleLock int64 = 0x636c2d726f6c65 // "cl-role"

// CreateDatabase makes a LOGIN role user with password (created, or its password reset when it exists) and a
// database name owned by it. Names and password may hold any character but NUL; the password is sent as a quoted
// literal inside the statement (utility statements take no parameters), which the cluster's
// log_min_error_statement=panic keeps out of its log even when the statement fails.
func (p *Postgres) CreateDatabase(ctx context.Context, name, user, password string) error {
	if strings.ContainsRune(name+user+password, 0) {
		return fmt.Errorf("create database %q: NUL in name, user or password", name)
	}
	ctx, cancel := context.WithTimeout(ctx, createDatabaseTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %q: connect as superuser (bound %s): %w", name, createDatabaseTimeout, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// Tests running in parallel may create databases for one shared role: two ALTER ROLEs at once fail with "tuple
	// concurrently updated". One role statement at a time on the cluster (the lock ends with the session).
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", createRoleLock); err != nil {
		return fmt.Errorf("create database %q: take the role lock: %w", name, err)
	}
	role := pgx.Identifier{user}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", user).Scan(&exists); err != nil {
		return fmt.Errorf("create database %q: look up role %q: %w", name, user, err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("%s ROLE %s WITH LOGIN PASSWORD %s", verb, role, quoteLiteral(password))); err != nil {
		return fmt.Errorf("create database %q: %s role %q: %w", name, strings.ToLower(verb), user, err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{name}.Sanitize(), role)); err != nil {
		return fmt.Errorf("create database %q owned by %q: %w", name, user, err)
	}
	return nil
}

// quoteLiteral quotes s as an escape-string literal (E'...'), whose meaning does not depend on
// standard_conforming_strings: backslash and quote are both escaped.
func quoteLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'"
}
