package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"testing"

	"golang.org/x/crypto/scrypt"
	"golang.org/x/crypto/sha3"
)

// fastN is the node's InsecureFastScrypt N (utils.FastScryptParams: N=2, p=1), for tests that do not measure cost.
const fastN = 2

// seal makes a key ring the way the node stores one, written from the format (go-ethereum keystore V3
// CryptoJSON): scrypt(“master-password-” + password, salt, n, r, p, 32), AES-128-CTR with derivedKey[:16], MAC =
// keccak256(derivedKey[16:32] ‖ ciphertext), all hex, in the JSON object the node puts in encrypted_keys.
func seal(t testing.TB, password string, n, r, p int) map[string]any {
	t.Helper()
	salt, iv := random(t, 32), random(t, 16)
	dk, err := scrypt.Key([]byte(passwordPrefix+password), salt, n, r, p, 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(dk[:16])
	if err != nil {
		t.Fatal(err)
	}
	// What the node seals: its raw key ring JSON (here without keys, the shape is all the MAC sees).
	plain := []byte(`{"CSA":null,"Eth":null,"OCR":null,"OCR2":null,"P2P":null,"Cosmos":null,"Solana":null,"StarkNet":null,"Aptos":null,"VRF":null,"Workflow":null,"LegacyKeys":null}`)
	ciphertext := make([]byte, len(plain))
	cipher.NewCTR(block, iv).XORKeyStream(ciphertext, plain)
	h := sha3.NewLegacyKeccak256()
	h.Write(dk[16:32])
	h.Write(ciphertext)
	return map[string]any{
		"cipher":       "aes-128-ctr",
		"ciphertext":   hex.EncodeToString(ciphertext),
		"cipherparams": map[string]any{"iv": hex.EncodeToString(iv)},
		"kdf":          "scrypt",
		"kdfparams":    map[string]any{"dklen": 32, "n": n, "p": p, "r": r, "salt": hex.EncodeToString(salt)},
		"mac":          hex.EncodeToString(h.Sum(nil)),
	}
}

func random(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// with returns a deep copy of ring with one field set (path "kdfparams.n", "cipherparams.iv" or a top-level name);
// a nil value deletes it.
func with(t testing.TB, ring map[string]any, path string, value any) map[string]any {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(marshal(t, ring), &c); err != nil {
		t.Fatal(err)
	}
	m, key := c, path
	for i := 0; i < len(path); i++ {
		if path[i] == '.' {
			m, key = c[path[:i]].(map[string]any), path[i+1:]
			break
		}
	}
	if value == nil {
		delete(m, key)
	} else {
		m[key] = value
	}
	return c
}
