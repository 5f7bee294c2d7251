package config

import (
	"encoding/hex"
	"regexp"
	"strings"

	"golang.org/x/crypto/sha3"
)

// hexAddressRE is an EVM address as the node writes it: 0x and 40 hex digits.
var hexAddressRE = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)

// ChecksumAddress returns the EIP-55 form of an address given as 0x and 40 hex digits in any case, and false when
// s is not such an address. EIP-55: hash the lower-case hex digits (without 0x) with Keccak-256 (the original
// Keccak padding, not the NIST SHA3-256); a letter is upper case where the matching nibble of the hash is 8 or more.
func ChecksumAddress(s string) (string, bool) {
	if !hexAddressRE.MatchString(s) {
		return "", false
	}
	lower := strings.ToLower(s[2:])
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte(lower))
	sum := hex.EncodeToString(h.Sum(nil))
	out := []byte("0x" + lower)
	for i := range lower {
		if c := lower[i]; c >= 'a' && c <= 'f' && sum[i] >= '8' {
			out[2+i] = c - 'a' + 'A'
		}
	}
	return string(out), true
}

// CheckAddress applies the node's rule for an address setting (chainlink v2.19.0
// core/chains/evm/types/address.go NewEIP55Address: s must equal common.HexToAddress(s).Hex()): 0x, 40 hex digits,
// letters in their EIP-55 checksum case. An all-lower-case address is refused like any other wrong case, unless its
// checksum form happens to have no upper-case letter. The error shows the checksummed form when there is one.
func CheckAddress(s string) error {
	want, ok := ChecksumAddress(s)
	switch {
	case !ok:
		return detail(ErrInvalid, "must be an EVM address: 0x and 40 hex digits in EIP-55 checksum case")
	case s != want:
		return detail(ErrChecksum, "the node refuses an address in any other case; write %s", want)
	}
	return nil
}
