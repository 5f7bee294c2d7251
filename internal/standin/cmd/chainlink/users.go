package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
)

// The API user lives in the node's database, as the real node's does: .api creates it only when the database has
// none (later a different .api is ignored: "Defaulted to assume single DB API User"), logins check the stored
// password, and PATCH /v2/user/password changes it. The stand-in stores a SHA-256 where the node stores bcrypt.
const usersDDL = `CREATE TABLE IF NOT EXISTS standin_users (email text PRIMARY KEY, password_sha256 bytea NOT NULL)`

// userStore is where the API user lives: the database (users), or memory in the HTTP unit tests.
type userStore interface {
	check(ctx context.Context, email, password string) (bool, error)
	change(ctx context.Context, email, old, new string) (bool, error)
}

var _ userStore = (*users)(nil)

type users struct{ dial dialer }

func hashPassword(p string) []byte { h := sha256.Sum256([]byte(p)); return h[:] }

// seed creates the user from .api if the database has none, and says which happened. Only then are the
// password's rules applied, as the node applies them.
func (u *users) seed(ctx context.Context, creds apiCredentials) (created bool, err error) {
	conn, err := u.dial(ctx)
	if err != nil {
		return false, err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, usersDDL); err != nil && !isSetupRace(err) {
		return false, fmt.Errorf("create standin_users: %w", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM standin_users)`).Scan(&exists); err != nil {
		return false, fmt.Errorf("read standin_users: %w", err)
	}
	if exists {
		return false, nil
	}
	// The node's rules for a new user's password (sessions.ValidateAndHashPassword: 16..50 bytes, no white space
	// at either end); the e-mail rule is its web API's, not .api's.
	if err := checkPassword(creds.Password); err != nil {
		return false, &inputError{Source: ".api", Key: "line 2", Err: err}
	}
	tag, err := conn.Exec(ctx, `INSERT INTO standin_users (email, password_sha256)
SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM standin_users)`, strings.ToLower(creds.Email), hashPassword(creds.Password))
	if err != nil {
		return false, fmt.Errorf("seed the API user: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// check reports whether email and password are the stored user's.
func (u *users) check(ctx context.Context, email, password string) (bool, error) {
	conn, err := u.dial(ctx)
	if err != nil {
		return false, err
	}
	defer closeConn(conn)
	var stored []byte
	err = conn.QueryRow(ctx, `SELECT password_sha256 FROM standin_users WHERE email = $1`, strings.ToLower(strings.TrimSpace(email))).Scan(&stored)
	if err != nil {
		return false, nil // no such user
	}
	return subtle.ConstantTimeCompare(stored, hashPassword(password)) == 1, nil
}

// change sets the user's password when old is the stored one.
func (u *users) change(ctx context.Context, email, old, new string) (bool, error) {
	if ok, err := u.check(ctx, email, old); !ok || err != nil {
		return false, err
	}
	conn, err := u.dial(ctx)
	if err != nil {
		return false, err
	}
	defer closeConn(conn)
	_, err = conn.Exec(ctx, `UPDATE standin_users SET password_sha256 = $2 WHERE email = $1`, strings.ToLower(email), hashPassword(new))
	return err == nil, err
}
