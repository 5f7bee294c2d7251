package secrets

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The node's password rules, as Chainlink v2.19.0 applies them (smartcontractkit/chainlink, tag v2.19.0, module
// github.com/smartcontractkit/chainlink/v2):
//
//	core/utils/password.go               VerifyPasswordComplexity: at least 16 BYTES (len), no white space at either
//	                                     end (the regexps ^\s+ and \s+$: RE2's \s is only \t \n \f \r and space),
//	                                     and, when given strings, none of them inside (case-insensitive). No maximum.
//	core/config/toml/types.go            validateDBURL: VerifyPasswordComplexity on the database URL's password, in
//	                                     every build (AllowSimplePasswords is refused by production builds).
//	core/sessions/user.go                ValidateAndHashPassword (the API user, created from .api on an empty users
//	                                     table): VerifyPasswordComplexity, then at most 50 bytes
//	                                     (MaxBcryptPasswordLength). No e-mail rule there.
//	core/cmd/shell.go                    credentialsFromFile: .api is split at "\n" and each line strings.TrimSpace'd.
//	core/utils/password.go               PasswordFromFile (-p .password): one trailing "\n" dropped, empty refused,
//	                                     white space at either end (strings.TrimSpace, Unicode) refused. Always.
//	core/cmd/key_store_authenticator.go  the keystore password's strength (VerifyPasswordComplexity) is enforced only
//	                                     when the keystore is empty; no maximum.
//	core/services/keystore/orm.go        the keystore is empty when `SELECT count(*) FROM encrypted_key_rings` is 0.
//	core/web/user_controller.go          the web API (POST /v2/users, PATCH /v2/user/password) adds the e-mail rule:
//	                                     VerifyPasswordComplexity(password, email).
const (
	// MinPasswordBytes is VerifyPasswordComplexity's minimum, counted in bytes of UTF-8, not characters.
	MinPasswordBytes = 16
	// MaxAPIPasswordBytes is the API user's maximum (bcrypt), in bytes. The other two passwords have no maximum.
	MaxAPIPasswordBytes = 50
)

// ErrPasswordRule is wrapped by every rule violation.
var ErrPasswordRule = errors.New("breaks the node's password rules")

func ruleError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrPasswordRule, fmt.Sprintf(format, args...))
}

// isRE2Space is RE2's \s, the white space of VerifyPasswordComplexity's regexps (not \v, not Unicode spaces).
func isRE2Space(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\f' || b == '\r'
}

// verifyComplexity is the node's VerifyPasswordComplexity without the disallowed strings.
func verifyComplexity(pw string) error {
	switch {
	case pw != "" && (isRE2Space(pw[0]) || isRE2Space(pw[len(pw)-1])):
		return ruleError("it begins or ends with white space")
	case len(pw) < MinPasswordBytes:
		return ruleError("it is shorter than %d bytes (%d); the node counts bytes, so a non-ASCII character counts 2 to 4", MinPasswordBytes, len(pw))
	}
	return nil
}

// trimmedByNode reports white space the node's strings.TrimSpace would drop from either end (Unicode white space).
func trimmedByNode(pw string) bool { return strings.TrimSpace(pw) != pw }

// CheckDatabasePassword applies the node's rule for the database URL's password (validateDBURL, every build): at
// least 16 bytes, no white space (\t \n \f \r or space) at either end. There is no maximum. Besides the node's rule,
// a NUL byte is refused: PostgreSQL cannot store such a password, so no login with it can succeed.
//
// The node skips this check when its redacted database URL contains "_test" (a hook for its own test databases);
// the agent does not: it keeps the rule for every database name.
func CheckDatabasePassword(pw string) error {
	if strings.IndexByte(pw, 0) >= 0 {
		return ruleError("it contains a NUL byte, which no PostgreSQL password can hold")
	}
	return verifyComplexity(pw)
}

// CheckAPIPassword applies the node's rules for the password of .api, the first admin user's (ValidateAndHashPassword
// when the node creates the user from .api on an empty database): 16 to 50 bytes, no white space at either end.
// White space is judged as the node reads .api (each line strings.TrimSpace'd), so a value the node would trim is
// refused rather than seeded as a different password from the secret; a line break would split the file.
// The e-mail rule is not applied: it belongs to the node's web API (see CheckAPIPasswordChange).
func CheckAPIPassword(pw string) error {
	switch {
	case strings.Contains(pw, "\n"):
		return ruleError("it contains a line break, which would split the .api file")
	case trimmedByNode(pw):
		return ruleError("it begins or ends with white space, which the node trims from .api (the user would get another password than the secret)")
	case len(pw) > MaxAPIPasswordBytes:
		return ruleError("it is longer than %d bytes (%d), the node's bcrypt limit; the node counts bytes, so a non-ASCII character counts 2 to 4", MaxAPIPasswordBytes, len(pw))
	}
	return verifyComplexity(pw)
}

// CheckAPIPasswordChange applies the rules a new API password meets when the agent moves the node's user to it
// through the web API (PATCH /v2/user/password, core/web/user_controller.go): CheckAPIPassword's, since the value is
// also the .api line, plus the web API's own rule that it must not contain the user's e-mail (case-insensitive).
func CheckAPIPasswordChange(pw, email string) error {
	if err := CheckAPIPassword(pw); err != nil {
		return err
	}
	if email != "" && strings.Contains(strings.ToLower(pw), strings.ToLower(email)) {
		return ruleError("it contains the API e-mail (node.api_email), which the node's web API refuses in a new password")
	}
	return nil
}

// CheckKeystorePassword applies the node's rules for the keystore password. keystoreEmpty is whether the node's
// keystore has no key ring yet (KeystoreEmpty asks the node's database); the caller must know it, the rule depends
// on it:
//
//   - always (PasswordFromFile, for the -p file): not empty, no white space at either end (Unicode), and valid
//     UTF-8 (secrets.toml, which also holds it, is TOML);
//   - only when keystoreEmpty (the node's strength rule, enforced only for a keystore it is about to create): at
//     least 16 bytes. There is no maximum.
//
// An existing key ring stays bound to the password it was made with, however weak: the node accepts it, so must the
// agent. Pass false when the state is unknown, and the node itself refuses a weak password for an empty keystore.
func CheckKeystorePassword(pw string, keystoreEmpty bool) error {
	switch {
	case pw == "":
		return ruleError("it is empty")
	case trimmedByNode(pw):
		return ruleError("it begins or ends with white space, which the node refuses in its password file")
	case !utf8.ValidString(pw):
		return ruleError("it is not valid UTF-8 text, which secrets.toml must be")
	case keystoreEmpty:
		if err := verifyComplexity(pw); err != nil {
			return fmt.Errorf("%w (the node's keystore is empty, so it will make its key ring with this password)", err)
		}
	}
	return nil
}
