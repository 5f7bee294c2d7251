package main

import (
	"fmt"
	"net/url"
	"strings"
)

// dbTarget is the non-secret part of the database URL, fit for logs.
type dbTarget struct {
	Host     string
	Database string
	User     string
}

// checkDatabaseURL parses the URL as the node does (user and password must be percent-encoded) and, unless
// simple passwords are allowed, holds the password to the node's rules. Errors never quote the URL.
func checkDatabaseURL(source, key, raw string, allowSimple bool) (dbTarget, error) {
	fail := func(err error) (dbTarget, error) {
		return dbTarget{}, &inputError{Source: source, Key: key, Err: err}
	}
	if raw == "" {
		return fail(fmt.Errorf("%w: the database URL is required", errMissing))
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes pieces of the input (possibly of the password): drop its message.
		return fail(fmt.Errorf("%w: not a valid URL (user and password must be percent-encoded)", errMalformed))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fail(fmt.Errorf("%w: the scheme must be postgres:// or postgresql://", errMalformed))
	}
	if u.Host == "" {
		return fail(fmt.Errorf("%w: no host in the URL", errMalformed))
	}
	t := dbTarget{Host: u.Host, Database: strings.TrimPrefix(u.Path, "/")}
	if u.User != nil {
		t.User = u.User.Username()
	}
	if allowSimple || strings.Contains(u.Redacted(), "_test") {
		return t, nil // the node skips the check for test databases too
	}
	pw := u.Query().Get("password")
	if pw == "" {
		if u.User == nil {
			return fail(fmt.Errorf("%w: the URL must be authenticated; plaintext URLs are not allowed", errInvalid))
		}
		var set bool
		if pw, set = u.User.Password(); !set {
			return fail(fmt.Errorf("%w: the URL must be authenticated; password is required", errInvalid))
		}
	}
	// The node's check of the database password has no upper bound (core/config: ValidateDBURL).
	switch {
	case strings.TrimSpace(pw) != pw:
		return fail(fmt.Errorf("%w: database password: %w", errInvalid, errWhitespace))
	case len(pw) < minPasswordLen:
		return fail(fmt.Errorf("%w: database password: %w", errInvalid, errTooShort))
	}
	return t, nil
}
