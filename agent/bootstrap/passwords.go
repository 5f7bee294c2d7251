package bootstrap

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The node's password rules (recent Chainlink releases).
const (
	MinPasswordLen   = 16
	MaxPasswordLen   = 50
	MinDBPasswordLen = 16
)

// ErrPasswordRule is wrapped by every rule violation.
var ErrPasswordRule = errors.New("breaks the node's password rules")

func ruleError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrPasswordRule, fmt.Sprintf(format, args...))
}

// checkLength enforces UTF-8 text of 16 to 50 characters with no white space at either end.
func checkLength(pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return ruleError("it is not valid UTF-8 text")
	case strings.IndexFunc(pw, unicode.IsControl) >= 0:
		return ruleError("it contains a control character")
	case n < MinPasswordLen:
		return ruleError("it is shorter than %d characters", MinPasswordLen)
	case n > MaxPasswordLen:
		return ruleError("it is longer than %d characters", MaxPasswordLen)
	case strings.TrimFunc(pw, unicode.IsSpace) != pw:
		return ruleError("it begins or ends with white space")
	}
	return nil
}

// CheckKeystorePassword applies the keystore password rules.
func CheckKeystorePassword(pw string) error { return checkLength(pw) }

// CheckAPIPassword applies the API password rules: the length rules, no line break (.api is line based), and it
// must not contain the API e-mail.
func CheckAPIPassword(pw, email string) error {
	if strings.ContainsAny(pw, "\r\n") {
		return ruleError("it contains a line break, which would split the .api file")
	}
	if err := checkLength(pw); err != nil {
		return err
	}
	if email != "" && strings.Contains(strings.ToLower(pw), strings.ToLower(email)) {
		return ruleError("it contains the API e-mail (node.api_email)")
	}
	return nil
}

// CheckDatabasePassword applies the production build's rule for the database URL's password.
func CheckDatabasePassword(pw string) error {
	if !utf8.ValidString(pw) {
		return ruleError("it is not valid UTF-8 text")
	}
	if strings.IndexFunc(pw, unicode.IsControl) >= 0 {
		return ruleError("it contains a control character") // PostgreSQL clients cannot send a NUL
	}
	if utf8.RuneCountInString(pw) < MinDBPasswordLen {
		return ruleError("it is shorter than %d characters", MinDBPasswordLen)
	}
	return nil
}
