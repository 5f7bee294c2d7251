package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
)

// Password rules of recent nodes (core/utils/password.go), measured in bytes as the node does.
const (
	minPasswordLen = 16
	maxPasswordLen = 50
)

// emailPattern is the node's check of the API user's e-mail (sessions.NewUser).
var emailPattern = regexp.MustCompile(`^[a-zA-Z0-9.!#$%&'*+/=?^_` + "`" + `{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)

// apiCredentials is the first admin user, from the .api file.
type apiCredentials struct {
	Email    string
	Password string
}

// checkPassword applies the node's password rules; disallowed strings (the API e-mail) must not appear in it,
// compared case-insensitively.
func checkPassword(pw string, disallowed ...string) error {
	switch {
	case strings.TrimSpace(pw) != pw:
		return errWhitespace
	case len(pw) < minPasswordLen:
		return errTooShort
	case len(pw) > maxPasswordLen:
		return errTooLong
	}
	for _, s := range disallowed {
		if s != "" && strings.Contains(strings.ToLower(pw), strings.ToLower(s)) {
			return errContainsEmail
		}
	}
	return nil
}

// readKeystorePassword reads a .password file: one trailing newline is dropped (POSIX text files), nothing else.
func readKeystorePassword(path string) (string, error) {
	data, err := readInput(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSuffix(string(data), "\n")
	if pw == "" {
		return "", &inputError{Source: path, Err: fmt.Errorf("%w: the file is empty", errMalformed)}
	}
	if err := checkKeystoreInput(pw); err != nil {
		return "", &inputError{Source: path, Err: err}
	}
	return pw, nil
}

// checkKeystoreInput is what the node asks of a keystore password before it has seen its key ring: no white space
// at either end, no maximum. Its strength (checkPassword's length) is judged only when the key ring is empty
// (unlockKeyRing), so a node whose ring was sealed with an older, weaker password still starts.
func checkKeystoreInput(pw string) error {
	if strings.TrimSpace(pw) != pw {
		return errWhitespace
	}
	return nil
}

// readAPICredentials reads a .api file: line 1 the e-mail, line 2 the password, both trimmed.
func readAPICredentials(path string) (apiCredentials, error) {
	data, err := readInput(path)
	if err != nil {
		return apiCredentials{}, err
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 2 {
		return apiCredentials{}, &inputError{Source: path,
			Err: fmt.Errorf("%w: want the e-mail on line 1 and the password on line 2", errMalformed)}
	}
	c := apiCredentials{Email: strings.TrimSpace(lines[0]), Password: strings.TrimSpace(lines[1])}
	switch {
	case c.Email == "":
		return apiCredentials{}, &inputError{Source: path, Key: "line 1", Err: fmt.Errorf("%w: the e-mail is empty", errMalformed)}
	case !emailPattern.MatchString(c.Email):
		return apiCredentials{}, &inputError{Source: path, Key: "line 1", Err: fmt.Errorf("%w: not an e-mail address", errMalformed)}
	case c.Password == "":
		return apiCredentials{}, &inputError{Source: path, Key: "line 2", Err: fmt.Errorf("%w: the password is empty", errMalformed)}
	}
	// The password's rules are the node's user creation's, applied only when .api creates the first user
	// (users.seed): a later .api is ignored, whatever it holds.
	return c, nil
}

// readInput reads a file the node was given, telling a missing file from one it may not read.
func readInput(path string) ([]byte, error) {
	if path == "" {
		return nil, &inputError{Source: "command line", Err: fmt.Errorf("%w: file flag not given", errMissing)}
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, &inputError{Source: path, Err: fmt.Errorf("%w: no such file", errMissing)}
	case errors.Is(err, fs.ErrPermission):
		return nil, &inputError{Source: path, Err: fmt.Errorf("%w: permission denied for uid %d", errUnreadable, os.Getuid())}
	default:
		return nil, &inputError{Source: path, Err: fmt.Errorf("%w: %v", errUnreadable, err)}
	}
}
