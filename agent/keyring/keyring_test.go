package keyring

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	right = "keystore-Right-p@ssw0rd"
	wrong = "keystore-Wrong-p@ssw0rd"
)

// rowDB is a RowQuerier whose one row holds raw (nil: SQL NULL), for the format's cases; the database's own states
// are TestCheckOnPostgres's.
type rowDB struct{ raw []byte }

var _ RowQuerier = rowDB{}

func (d rowDB) QueryRow(context.Context, string, ...any) pgx.Row { return fakeRow{scan: d.scan} }

func (d rowDB) scan(dest ...any) error {
	*dest[0].(*[]byte) = d.raw
	return nil
}

type fakeRow struct{ scan func(dest ...any) error }

func (r fakeRow) Scan(dest ...any) error { return r.scan(dest...) }

func check(t *testing.T, raw []byte, password string) (Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := Check(ctx, rowDB{raw}, password)
	if err != nil && strings.Contains(err.Error(), password) && password != "" {
		t.Errorf("the error quotes the password: %v", err)
	}
	return v, err
}

// TestVerdicts: the node's own decision on key rings built from its format.
func TestVerdicts(t *testing.T) {
	t.Parallel()
	ring := seal(t, right, fastN, DefaultR, DefaultP)
	tampered := with(t, ring, "ciphertext", "00"+ring["ciphertext"].(string)[2:])
	if tampered["ciphertext"] == ring["ciphertext"] {
		tampered = with(t, ring, "ciphertext", "ff"+ring["ciphertext"].(string)[2:])
	}
	for _, tc := range []struct {
		name     string
		raw      []byte
		password string
		want     Verdict
	}{
		{"RightPasswordOpens", marshal(t, ring), right, Opens},
		{"WrongPasswordDoesNotOpen", marshal(t, ring), wrong, DoesNotOpen},
		{"NodeFormOfThePasswordDoesNotOpen", marshal(t, ring), passwordPrefix + right, DoesNotOpen},
		{"ExtraFieldsIgnored", marshal(t, with(t, ring, "version", 3)), right, Opens},
		{"TamperedCiphertextOpensForNoPassword", marshal(t, tampered), right, DoesNotOpen},
		// The node refuses an empty password before it tries ("no password provided"), even one it was sealed with.
		{"EmptyPasswordNeverOpens", marshal(t, seal(t, "", fastN, DefaultR, DefaultP)), "", DoesNotOpen},
		// A row without keys (NULL): the node's Decrypt makes a new key ring for any password.
		{"RowWithoutKeysOpensForAny", nil, wrong, Opens},
		{"RowWithoutKeysNotForEmpty", nil, "", DoesNotOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := check(t, tc.raw, tc.password)
			if err != nil || got != tc.want {
				t.Fatalf("Check = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestNodeDefaultParams: the node's own parameters (N=2^18, r=8, p=1) are within the bound, and decide alike.
func TestNodeDefaultParams(t *testing.T) {
	t.Parallel()
	raw := marshal(t, seal(t, right, DefaultN, DefaultR, DefaultP))
	for password, want := range map[string]Verdict{right: Opens, wrong: DoesNotOpen} {
		if got, err := check(t, raw, password); err != nil || got != want {
			t.Errorf("Check = %s, %v; want %s", got, err, want)
		}
	}
}

// TestMalformed: a row the node could not read, or that costs more than the node's own, is an error (no verdict),
// whatever the password, and the error names the field.
func TestMalformed(t *testing.T) {
	t.Parallel()
	ring := seal(t, right, fastN, DefaultR, DefaultP)
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
		text string
	}{
		{"NotJSON", []byte(`{"cipher":`), ErrMalformed, "not a JSON object"},
		{"JSONArray", []byte(`[1,2]`), ErrMalformed, "not a JSON object"},
		{"JSONNull", []byte(`null`), ErrMalformed, "no cipher"},
		{"UnknownCipher", marshal(t, with(t, ring, "cipher", "aes-256-gcm")), ErrUnsupported, `"aes-256-gcm"`},
		{"UnknownKDF", marshal(t, with(t, ring, "kdf", "argon2id")), ErrUnsupported, `"argon2id"`},
		{"PBKDF2NotWrittenByTheNode", marshal(t, with(t, ring, "kdf", "pbkdf2")), ErrUnsupported, `"pbkdf2"`},
		{"MACNotHex", marshal(t, with(t, ring, "mac", "zz")), ErrMalformed, "mac is not hex"},
		{"MACShort", marshal(t, with(t, ring, "mac", "abcd")), ErrMalformed, "mac is 2 bytes, not 32"},
		{"IVMissing", marshal(t, with(t, ring, "cipherparams.iv", nil)), ErrMalformed, "cipherparams.iv is 0 bytes"},
		{"IVShort", marshal(t, with(t, ring, "cipherparams.iv", "00112233")), ErrMalformed, "cipherparams.iv is 4 bytes"},
		{"CiphertextNotHex", marshal(t, with(t, ring, "ciphertext", "0x12")), ErrMalformed, "ciphertext is not hex"},
		{"SaltNotString", marshal(t, with(t, ring, "kdfparams.salt", 12)), ErrMalformed, "salt is not a string"},
		{"SaltNotHex", marshal(t, with(t, ring, "kdfparams.salt", "salt")), ErrMalformed, "salt is not hex"},
		{"NMissing", marshal(t, with(t, ring, "kdfparams.n", nil)), ErrMalformed, "kdfparams.n is not a number"},
		{"NUpperCase", marshal(t, with(t, with(t, ring, "kdfparams.n", nil), "kdfparams.N", fastN)), ErrMalformed, "kdfparams.n is not a number"},
		{"NString", marshal(t, with(t, ring, "kdfparams.n", "262144")), ErrMalformed, "kdfparams.n is not a number"},
		{"NFraction", marshal(t, with(t, ring, "kdfparams.n", 2.5)), ErrMalformed, "not a 32-bit integer"},
		{"NNotPowerOfTwo", marshal(t, with(t, ring, "kdfparams.n", 1000)), ErrMalformed, "not a power of 2"},
		{"NOne", marshal(t, with(t, ring, "kdfparams.n", 1)), ErrMalformed, "not a power of 2"},
		{"RZero", marshal(t, with(t, ring, "kdfparams.r", 0)), ErrMalformed, "at least 1"},
		{"DKLenShort", marshal(t, with(t, ring, "kdfparams.dklen", 16)), ErrMalformed, "dklen 16"},
		{"NAboveNodeDefault", marshal(t, with(t, ring, "kdfparams.n", DefaultN*2)), ErrTooCostly, "N=524288 r=8 p=1"},
		{"RAboveNodeDefault", marshal(t, with(t, with(t, ring, "kdfparams.n", DefaultN), "kdfparams.r", 16)), ErrTooCostly, "r=16"},
		{"PAboveNodeDefault", marshal(t, with(t, with(t, ring, "kdfparams.n", DefaultN), "kdfparams.p", 2)), ErrTooCostly, "p=2"},
		{"AbsurdN", marshal(t, with(t, ring, "kdfparams.n", 1<<30)), ErrTooCostly, "N=1073741824"},
		{"AbsurdP", marshal(t, with(t, ring, "kdfparams.p", 1<<31-1)), ErrTooCostly, "p=2147483647"},
		{"NBeyond32Bits", marshal(t, with(t, ring, "kdfparams.n", 1<<40)), ErrMalformed, "not a 32-bit integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			got, err := check(t, tc.raw, right)
			if !errors.Is(err, tc.want) || got != 0 {
				t.Fatalf("Check = %s, %v; want no verdict and %v", got, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), Table) {
				t.Errorf("error %q does not name %q and the table", err, tc.text)
			}
			if tc.want == ErrTooCostly && time.Since(start) > time.Second {
				t.Errorf("refusing a costly key ring took %s: it must not derive first", time.Since(start))
			}
		})
	}
}

// TestWaitsForTheRunningCheck: one derivation at a time per process; a caller's deadline bounds its wait for the
// slot.
func TestWaitsForTheRunningCheck(t *testing.T) {
	raw := marshal(t, seal(t, right, fastN, DefaultR, DefaultP))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := acquire(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if v, err := Check(short, rowDB{raw}, right); !errors.Is(err, context.DeadlineExceeded) || v != 0 {
		t.Errorf("Check while the slot is taken = %s, %v; want no verdict and the deadline", v, err)
	}
	release()
	if v, err := Check(ctx, rowDB{raw}, right); err != nil || v != Opens {
		t.Errorf("Check once the slot is free = %s, %v; want opens", v, err)
	}
}
