package main

import (
	"errors"
	"fmt"
)

// Sentinels for the reasons the node refuses to start; tests match them with errors.Is.
var (
	errMissing       = errors.New("missing")
	errUnreadable    = errors.New("unreadable")
	errMalformed     = errors.New("malformed")
	errWrongType     = errors.New("wrong type")
	errInvalid       = errors.New("invalid value")
	errTooShort      = errors.New("password is shorter than 16 characters")
	errTooLong       = errors.New("password is longer than 50 characters")
	errWhitespace    = errors.New("password has leading or trailing white space")
	errContainsEmail = errors.New("password contains the API e-mail")
	errNotWritable   = errors.New("not writable by the node")
)

// inputError names the input that stops the node (a file, or an environment variable) and the key in it, and
// says why. It never carries the value: the inputs hold secrets.
type inputError struct {
	Source string // file path or "environment"
	Key    string // e.g. "Database.Lock.LeaseDuration" or "DATABASE_URL"; empty for the whole input
	Err    error
}

func (e *inputError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %v", e.Source, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.Source, e.Key, e.Err)
}

func (e *inputError) Unwrap() error { return e.Err }

// exitError carries the process exit code of a failure that has already been logged.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }
