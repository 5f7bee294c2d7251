package keyring

import (
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/scrypt"
	"golang.org/x/crypto/sha3"
)

// Errors of a key ring row Check cannot judge. Each wraps the detail (which field, which value); none holds the
// password.
var (
	// ErrMalformed: the row is not a key ring the node could read (bad JSON, hex, lengths or parameters).
	ErrMalformed = errors.New("malformed key ring")
	// ErrUnsupported: a cipher or KDF the node does not write (it writes aes-128-ctr and scrypt only).
	ErrUnsupported = errors.New("unsupported key ring encryption")
	// ErrTooCostly: scrypt parameters above the node's default cost (N·r·p > 2^21, i.e. more than 256 MiB or
	// more work than the node's own key ring takes).
	ErrTooCostly = errors.New("key ring scrypt parameters above the node's default cost")
)

// The node's format: go-ethereum's keystore V3 CryptoJSON (accounts/keystore, v1.14.11 in chainlink v2.19.0).
const (
	cipherName = "aes-128-ctr"
	kdfName    = "scrypt"
	// passwordPrefix is the node's adulteratedPassword: the key ring is sealed with "master-password-" + password.
	passwordPrefix = "master-password-"

	// DefaultN, DefaultR and DefaultP are the node's scrypt parameters (utils.DefaultScryptParams: geth's
	// StandardScryptN and StandardScryptP, and geth's fixed r): 128·N·r = 256 MiB per derivation.
	DefaultN = 1 << 18
	DefaultR = 8
	DefaultP = 1
	// maxWork bounds N·r·p at the node's default: it bounds memory (128·N·r bytes) and time alike.
	maxWork = DefaultN * DefaultR * DefaultP

	macLen = 32 // keccak256
	ivLen  = 16 // the AES block: the node's CTR panics on another length
	// The MAC key is derivedKey[16:32], the AES key derivedKey[:16]: dklen below 32 panics in the node. It writes 32.
	minDKLen, maxDKLen = 32, 64
)

// cryptoJSON is geth's CryptoJSON as encoding/json reads it: field names matched case-insensitively, unknown
// fields ignored. kdfparams stays raw: geth reads it as a map, so its keys must match exactly.
type cryptoJSON struct {
	Cipher       string `json:"cipher"`
	CipherText   string `json:"ciphertext"`
	CipherParams struct {
		IV string `json:"iv"`
	} `json:"cipherparams"`
	KDF       string                     `json:"kdf"`
	KDFParams map[string]json.RawMessage `json:"kdfparams"`
	MAC       string                     `json:"mac"`
}

// sealed is a parsed key ring: what the MAC check needs, the parameters within bounds.
type sealed struct {
	ciphertext, mac, salt []byte
	n, r, p, dkLen        int
}

// parse checks the row the way geth's DecryptDataV3 reads it, and refuses what would make the node fail
// otherwise (a panic on a short dklen or IV) or cost more than the node's default.
func parse(raw []byte) (*sealed, error) {
	var c cryptoJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrMalformed, err)
	}
	switch {
	case c.Cipher == "":
		return nil, fmt.Errorf("%w: no cipher", ErrMalformed)
	case c.Cipher != cipherName:
		return nil, fmt.Errorf("%w: cipher %s, not %s", ErrUnsupported, quote(c.Cipher), cipherName)
	case c.KDF == "":
		return nil, fmt.Errorf("%w: no kdf", ErrMalformed)
	case c.KDF != kdfName:
		return nil, fmt.Errorf("%w: kdf %s, not %s", ErrUnsupported, quote(c.KDF), kdfName)
	}
	var s sealed
	var err error
	if s.mac, err = hexField("mac", c.MAC, macLen); err != nil {
		return nil, err
	}
	// The IV is checked, not kept: the MAC covers the ciphertext only, and nothing is decrypted.
	if _, err = hexField("cipherparams.iv", c.CipherParams.IV, ivLen); err != nil {
		return nil, err
	}
	if s.ciphertext, err = hexField("ciphertext", c.CipherText, -1); err != nil {
		return nil, err
	}
	if err := s.kdfParams(c.KDFParams); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *sealed) kdfParams(params map[string]json.RawMessage) error {
	var salt string
	if err := json.Unmarshal(params["salt"], &salt); err != nil {
		return fmt.Errorf("%w: kdfparams.salt is not a string", ErrMalformed)
	}
	var err error
	if s.salt, err = hexField("kdfparams.salt", salt, -1); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"n", &s.n}, {"r", &s.r}, {"p", &s.p}, {"dklen", &s.dkLen}} {
		if *f.dst, err = intParam(params, f.name); err != nil {
			return err
		}
	}
	switch {
	case s.dkLen < minDKLen || s.dkLen > maxDKLen:
		return fmt.Errorf("%w: kdfparams.dklen %d, not %d to %d", ErrMalformed, s.dkLen, minDKLen, maxDKLen)
	case s.n < 2 || s.n&(s.n-1) != 0:
		return fmt.Errorf("%w: kdfparams.n %d is not a power of 2 above 1", ErrMalformed, s.n)
	case s.r < 1 || s.p < 1:
		return fmt.Errorf("%w: kdfparams.r %d and p %d must be at least 1", ErrMalformed, s.r, s.p)
	case s.n > maxWork || s.r > maxWork || s.p > maxWork || s.n*s.r > maxWork || s.n*s.r*s.p > maxWork:
		// Each factor bounded first, so the products cannot overflow.
		return fmt.Errorf("%w: N=%d r=%d p=%d; at most N·r·p = %d (the node's N=%d r=%d p=%d, %d MiB)",
			ErrTooCostly, s.n, s.r, s.p, maxWork, DefaultN, DefaultR, DefaultP, 128*DefaultN*DefaultR>>20)
	}
	return nil
}

// intParam reads a whole JSON number (geth converts the float64 of encoding/json to int).
func intParam(params map[string]json.RawMessage, name string) (int, error) {
	var f float64
	if err := json.Unmarshal(params[name], &f); err != nil || params[name] == nil {
		return 0, fmt.Errorf("%w: kdfparams.%s is not a number", ErrMalformed, name)
	}
	if f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, fmt.Errorf("%w: kdfparams.%s %g is not a 32-bit integer", ErrMalformed, name, f)
	}
	return int(f), nil
}

// hexField decodes a hex field; wantLen -1 accepts any length.
func hexField(name, value string, wantLen int) ([]byte, error) {
	b, err := hex.DecodeString(value)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s is not hex: %v", ErrMalformed, name, err)
	case wantLen >= 0 && len(b) != wantLen:
		return nil, fmt.Errorf("%w: %s is %d bytes, not %d", ErrMalformed, name, len(b), wantLen)
	}
	return b, nil
}

// opens derives the key from the node's form of password and compares the MAC, keccak256(derivedKey[16:32] ‖
// ciphertext), in constant time. The derived key, the hash state that held half of it and the password's bytes
// are zeroed before it returns; scrypt's own work buffers are left to the garbage collector.
func (s *sealed) opens(password string) (bool, error) {
	auth := make([]byte, 0, len(passwordPrefix)+len(password))
	auth = append(append(auth, passwordPrefix...), password...)
	defer clear(auth)
	dk, err := scrypt.Key(auth, s.salt, s.n, s.r, s.p, s.dkLen)
	if err != nil {
		return false, fmt.Errorf("%w: scrypt: %v", ErrMalformed, err)
	}
	defer clear(dk)
	h := sha3.NewLegacyKeccak256()
	h.Write(dk[16:32])
	h.Write(s.ciphertext)
	defer h.Reset()
	return subtle.ConstantTimeCompare(h.Sum(nil), s.mac) == 1, nil
}

// quote shows a value from the row, cut to 32 bytes (the row is the node's, not a secret).
func quote(v string) string {
	if len(v) > 32 {
		return fmt.Sprintf("%q…", v[:32])
	}
	return fmt.Sprintf("%q", v)
}
