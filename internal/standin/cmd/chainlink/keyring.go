package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/scrypt"
	"golang.org/x/crypto/sha3"
)

// The key ring as the real node keeps it (v2.19.0: migration 0060, keystore/orm.go): one row of
// encrypted_key_rings, sealed with the keystore password the node first saw, in go-ethereum's keystore V3
// CryptoJSON (aes-128-ctr, scrypt over "master-password-" + password, keccak256 MAC). agent/keyring.Check reads it
// as it reads the real node's. The stand-in seals a token, not keys, and with a cheaper scrypt than the node's
// default N=2^18 (its 256 MiB and seconds per start would make the stand-in heavy): N=2^12, r=8, p=1, 4 MiB.
const (
	keyRingDDL = `CREATE TABLE IF NOT EXISTS encrypted_key_rings (encrypted_keys jsonb, updated_at timestamptz NOT NULL)`

	keyRingPasswordPrefix = "master-password-" // the node's adulteratedPassword
	keyRingScryptN        = 1 << 12
	keyRingScryptR        = 8
	keyRingScryptP        = 1
	keyRingDKLen          = 32
)

// errKeyRingPassword is the real node's refusal, word for word: it logs it and exits 1.
var errKeyRingPassword = errors.New("unable to decrypt encrypted key ring: could not decrypt key with given password")

// keyRingJSON is the CryptoJSON the node writes (geth's EncryptDataV3).
type keyRingJSON struct {
	Cipher       string `json:"cipher"`
	CipherText   string `json:"ciphertext"`
	CipherParams struct {
		IV string `json:"iv"`
	} `json:"cipherparams"`
	KDF       string `json:"kdf"`
	KDFParams struct {
		DKLen int    `json:"dklen"`
		N     int    `json:"n"`
		P     int    `json:"p"`
		R     int    `json:"r"`
		Salt  string `json:"salt"`
	} `json:"kdfparams"`
	MAC string `json:"mac"`
}

// unlockKeyRing opens the key ring with password, as the node does once it holds its lease and before its HTTP
// port opens: no ring (or one never sealed: encrypted_keys NULL) is sealed with this password; a sealed one opens
// only with the password it was sealed with, else errKeyRingPassword. Only the lease holder calls it.
func unlockKeyRing(ctx context.Context, q querier, password string) (sealedNow bool, err error) {
	if _, err := q.Exec(ctx, keyRingDDL); err != nil && !isSetupRace(err) {
		return false, fmt.Errorf("create encrypted_key_rings: %w", err)
	}
	var raw []byte
	err = q.QueryRow(ctx, `SELECT encrypted_keys FROM encrypted_key_rings LIMIT 1`).Scan(&raw)
	empty := errors.Is(err, pgx.ErrNoRows) || (err == nil && raw == nil)
	if empty { // the one moment the node judges the keystore password's strength
		if err := checkPassword(password); err != nil && !errors.Is(err, errTooLong) {
			return false, fmt.Errorf("keystore password: %w", err)
		}
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return true, sealKeyRing(ctx, q, password,
			`INSERT INTO encrypted_key_rings (encrypted_keys, updated_at) VALUES ($1, NOW())`)
	case err != nil:
		return false, fmt.Errorf("read encrypted_key_rings: %w", err)
	case raw == nil:
		return true, sealKeyRing(ctx, q, password, `UPDATE encrypted_key_rings SET encrypted_keys = $1, updated_at = NOW()`)
	}
	var ring keyRingJSON
	if err := json.Unmarshal(raw, &ring); err != nil {
		return false, fmt.Errorf("%w: encrypted_key_rings.encrypted_keys is not a key ring: %v", errMalformed, err)
	}
	salt, err1 := hex.DecodeString(ring.KDFParams.Salt)
	ciphertext, err2 := hex.DecodeString(ring.CipherText)
	mac, err3 := hex.DecodeString(ring.MAC)
	if err := errors.Join(err1, err2, err3); err != nil || ring.KDFParams.DKLen < keyRingDKLen {
		return false, fmt.Errorf("%w: encrypted_key_rings.encrypted_keys is not a key ring", errMalformed)
	}
	key, err := scrypt.Key([]byte(keyRingPasswordPrefix+password), salt, ring.KDFParams.N, ring.KDFParams.R,
		ring.KDFParams.P, ring.KDFParams.DKLen)
	if err != nil {
		return false, fmt.Errorf("%w: key ring scrypt parameters: %v", errMalformed, err)
	}
	if subtle.ConstantTimeCompare(keyRingMAC(key, ciphertext), mac) != 1 {
		return false, errKeyRingPassword
	}
	return false, nil
}

// sealKeyRing encrypts a token under password and stores it with stmt ($1: the CryptoJSON).
func sealKeyRing(ctx context.Context, q querier, password, stmt string) error {
	var salt [32]byte
	var iv [aes.BlockSize]byte
	_, _ = rand.Read(salt[:])
	_, _ = rand.Read(iv[:])
	key, err := scrypt.Key([]byte(keyRingPasswordPrefix+password), salt[:], keyRingScryptN, keyRingScryptR,
		keyRingScryptP, keyRingDKLen)
	if err != nil {
		return fmt.Errorf("seal the key ring: %w", err)
	}
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		return fmt.Errorf("seal the key ring: %w", err)
	}
	plain := []byte(`{"standin":true}`)
	ciphertext := make([]byte, len(plain))
	cipher.NewCTR(block, iv[:]).XORKeyStream(ciphertext, plain)
	var ring keyRingJSON
	ring.Cipher, ring.KDF = "aes-128-ctr", "scrypt"
	ring.CipherText, ring.CipherParams.IV = hex.EncodeToString(ciphertext), hex.EncodeToString(iv[:])
	ring.KDFParams.DKLen, ring.KDFParams.N = keyRingDKLen, keyRingScryptN
	ring.KDFParams.R, ring.KDFParams.P = keyRingScryptR, keyRingScryptP
	ring.KDFParams.Salt, ring.MAC = hex.EncodeToString(salt[:]), hex.EncodeToString(keyRingMAC(key, ciphertext))
	raw, err := json.Marshal(ring)
	if err != nil {
		return fmt.Errorf("seal the key ring: %w", err)
	}
	if _, err := q.Exec(ctx, stmt, raw); err != nil {
		return fmt.Errorf("store the key ring: %w", err)
	}
	return nil
}

// keyRingMAC is geth's V3 MAC: keccak256(derivedKey[16:32] ‖ ciphertext).
func keyRingMAC(key, ciphertext []byte) []byte {
	h := sha3.NewLegacyKeccak256()
	h.Write(key[16:32])
	h.Write(ciphertext)
	return h.Sum(nil)
}
