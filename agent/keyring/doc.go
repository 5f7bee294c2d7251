// Package keyring tells whether a keystore password opens the Chainlink node's key ring, reading the ring from the
// node's database and deciding exactly as the node does when it starts. The node's key ring is sealed with the
// keystore password it first saw; started with another, it cannot unlock its keys and exits. The agent asks Check
// before it gives the node a rotated password, and keeps the one that opens.
//
// It owns that one question: the read of the key ring row and the MAC check. It decrypts no key and keeps nothing.
//
// # What the node does (chainlink v2.19.0, go-ethereum v1.14.11)
//
// The key ring is one row of encrypted_key_rings (encrypted_keys jsonb, updated_at), read with LIMIT 1. Empty
// means no row: only then does the node hold a password to its strength rule (cmd/key_store_authenticator.go,
// utils.VerifyPasswordComplexity: at least 16 bytes, no white space at either end; secrets.CheckKeystorePassword
// with keystoreEmpty). Its first unlock inserts a row with encrypted_keys NULL, which any password opens, and its
// first saved key seals the ring. encrypted_keys is go-ethereum's keystore V3 CryptoJSON: cipher aes-128-ctr, kdf
// scrypt with kdfparams n, r, p, dklen and salt (the node's defaults N=2^18, r=8, p=1, dklen 32; 2 instead of
// 2^18 under InsecureFastScrypt), the hex ciphertext and mac. The node derives the key from "master-password-" +
// password (its adulteratedPassword), and the password opens the ring when keccak256(derivedKey[16:32] ‖
// ciphertext) equals mac; otherwise "could not decrypt key with given password".
//
// # Verdicts and failures
//
//	row absent, or table absent (42P01: not migrated)  → Empty
//	encrypted_keys NULL                                → Opens (DoesNotOpen for "")
//	MAC matches                                        → Opens
//	MAC differs, or password ""                        → DoesNotOpen
//	query fails                                        → error (worth retrying)
//	not a key ring the node could read                 → ErrMalformed, ErrUnsupported (cipher, KDF)
//	scrypt N·r·p above the node's default              → ErrTooCostly, before any work
//
// An error comes with no verdict (the zero Verdict), never with Empty.
//
// # Cost
//
// One check at the node's defaults allocates 256 MiB (scrypt's 128·N·r) and takes one to a few seconds of one
// core. BenchmarkCheck, on a 2-core VM whose load was 4–10 (others' builds and tests): 1.9–3.7 s per check, 268 MB
// allocated, peak RSS 268 MiB; the real node's test saw 1.5–4 s per check. The derivation cannot be interrupted
// once begun. Check runs one at a time per process and hands scrypt's buffer back to the host when it is done
// (debug.FreeOSMemory): without that, back-to-back checks ran in 0.75–2.1 s but the agent's RSS peaked at 517 MiB
// and kept the pages next to the node; the price is fresh pages to fault in at each check, which checks made once
// per start or rotation pay anyway. A key ring that would cost more than the node's default is refused.
package keyring
