package secrets

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestPasswordRules(t *testing.T) {
	db := CheckDatabasePassword
	api := CheckAPIPassword
	change := func(p string) error { return CheckAPIPasswordChange(p, "ops@example.com") }
	emptyKeystore := func(p string) error { return CheckKeystorePassword(p, true) }
	keptKeystore := func(p string) error { return CheckKeystorePassword(p, false) }
	eacute := "\u00e9" // é: 2 bytes of UTF-8
	cases := []struct {
		name, pw string
		check    func(string) error
		ok       bool
	}{
		// Database URL password: 16+ bytes, no \t \n \f \r or space at either end, no maximum.
		{"DBSixteenBytesAccepted", "0123456789abcdef", db, true},
		{"DBFifteenBytesRefused", "0123456789abcde", db, false},
		{"DBEightTwoByteCharactersAccepted", strings.Repeat(eacute, 8), db, true},
		{"DBSevenTwoByteCharactersAndOneByteRefused", strings.Repeat(eacute, 7) + "x", db, false},
		{"DBSixtyBytesAccepted", strings.Repeat("x", 60), db, true},
		{"DBLeadingSpaceRefused", " 0123456789abcdef", db, false},
		{"DBTrailingTabRefused", "0123456789abcdef\t", db, false},
		{"DBTrailingNewlineRefused", "0123456789abcdef\n", db, false},
		{"DBTrailingVerticalTabAccepted", "0123456789abcdef\v", db, true}, // not in RE2's \s
		{"DBTrailingNoBreakSpaceAccepted", "0123456789abcdef\u00a0", db, true},
		{"DBInnerSpaceAccepted", "0123 4567 89ab cdef", db, true},
		{"DBNulRefused", "db-password-0123456789\x00", db, false},
		{"DBControlCharacterAccepted", "db-password\x07-0123456789", db, true},
		{"DBURLSpecialCharactersAccepted", testDBPassword, db, true},
		// API password (.api): 16 to 50 bytes, no white space at either end, no line break; the e-mail is allowed.
		{"APIFiftyBytesAccepted", strings.Repeat("x", 50), api, true},
		{"APIFiftyOneBytesRefused", strings.Repeat("x", 51), api, false},
		{"APITwentyFiveTwoByteCharactersAccepted", strings.Repeat(eacute, 25), api, true},
		{"APITwentyFiveTwoByteCharactersAndOneByteRefused", strings.Repeat(eacute, 25) + "x", api, false},
		{"APIFortyNineBytesAndATwoByteCharacterRefused", strings.Repeat("x", 49) + eacute, api, false},
		{"APIFifteenBytesRefused", "0123456789abcde", api, false},
		{"APIContainingEmailAccepted", "xxOPS@example.comxx", api, true},
		{"APINewlineRefused", "0123456789\nabcdef", api, false},
		{"APILeadingSpaceRefused", " 0123456789abcdefgh", api, false},
		{"APITrailingNoBreakSpaceRefused", "0123456789abcdefgh\u00a0", api, false}, // the node's TrimSpace drops it
		// API password change through the web API: the same plus the e-mail rule.
		{"ChangeContainingEmailRefused", "xxOPS@example.comxx", change, false},
		{"ChangeOK", "0123456789abcdefgh", change, true},
		{"ChangeFiftyOneBytesRefused", strings.Repeat("x", 51), change, false},
		// Keystore: strength only for an empty keystore; white space at either end always; no maximum.
		{"KeystoreWeakAcceptedForExistingKeyRing", "weak", keptKeystore, true},
		{"KeystoreWeakRefusedForEmptyKeystore", "weak", emptyKeystore, false},
		{"KeystoreFifteenBytesRefusedForEmptyKeystore", "0123456789abcde", emptyKeystore, false},
		{"KeystoreSixteenBytesAcceptedForEmptyKeystore", "0123456789abcdef", emptyKeystore, true},
		{"KeystoreEightTwoByteCharactersAcceptedForEmptyKeystore", strings.Repeat(eacute, 8), emptyKeystore, true},
		{"KeystoreTwoHundredBytesAccepted", strings.Repeat("k", 200), emptyKeystore, true},
		{"KeystoreLeadingSpaceRefusedForExistingKeyRing", " 0123456789abcdef", keptKeystore, false},
		{"KeystoreTrailingNoBreakSpaceRefused", "0123456789abcdef\u00a0", keptKeystore, false},
		{"KeystoreEmptyRefused", "", keptKeystore, false},
		{"KeystoreNotUTF8Refused", "000000000000\x8d0000000", keptKeystore, false},
		{"KeystoreControlCharacterAccepted", "0123456789\x07abcdef", emptyKeystore, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check(tc.pw)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && (!errors.Is(err, ErrPasswordRule) || (strings.TrimSpace(tc.pw) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.pw)))) {
				t.Errorf("error %q must wrap ErrPasswordRule and not quote the password", err)
			}
		})
	}
}

// The node's own expressions (chainlink v2.19.0 core/utils/password.go), to hold the agent's byte-wise version to.
var (
	nodeLeadingWhitespace  = regexp.MustCompile(`^\s+`)
	nodeTrailingWhitespace = regexp.MustCompile(`\s+$`)
)

// FuzzPasswordRulesMatchTheNode: for any value, the agent's database and API rules decide as the node's code does
// (VerifyPasswordComplexity; the API's 50-byte limit after the .api line is trimmed), the only extra refusals being
// a NUL in the database password and, for .api, what the file cannot carry unchanged.
func FuzzPasswordRulesMatchTheNode(f *testing.F) {
	for _, seed := range []string{"", "0123456789abcdef", " 0123456789abcdef", "0123456789abcdef\v", "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
		strings.Repeat("x", 50), strings.Repeat("x", 51), "0123456789abcdef\u00a0", "x\x00xxxxxxxxxxxxxxxx"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		nodeOK := !nodeLeadingWhitespace.MatchString(pw) && !nodeTrailingWhitespace.MatchString(pw) && len(pw) >= 16
		if got := CheckDatabasePassword(pw) == nil; got != (nodeOK && !strings.Contains(pw, "\x00")) {
			t.Fatalf("database password %q: agent ok=%t, node ok=%t", pw, got, nodeOK)
		}
		line := strings.TrimSpace(pw) // as the node reads .api
		nodeAPIOK := !nodeLeadingWhitespace.MatchString(line) && !nodeTrailingWhitespace.MatchString(line) && len(line) >= 16 && len(line) <= 50
		carried := line == pw && !strings.Contains(pw, "\n")
		if got := CheckAPIPassword(pw) == nil; got != (nodeAPIOK && carried) {
			t.Fatalf("API password %q: agent ok=%t, node ok=%t, carried unchanged=%t", pw, got, nodeAPIOK, carried)
		}
	})
}
