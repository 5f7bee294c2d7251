package config

import (
	"errors"
	"strings"
	"testing"
)

// TestChecksumAddress: the EIP-55 vectors of the EIP itself, whatever case they are given in.
func TestChecksumAddress(t *testing.T) {
	for _, want := range []string{
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
		"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
		"0x52908400098527886E0F7030069857D2E4169EE7", "0xde709f2102306220921060314715629080e2fb77",
	} {
		for _, in := range []string{want, strings.ToLower(want), "0x" + strings.ToUpper(want[2:])} {
			if got, ok := ChecksumAddress(in); !ok || got != want {
				t.Errorf("ChecksumAddress(%s) = %s, %t; want %s", in, got, ok, want)
			}
		}
	}
	for _, bad := range []string{"", "0x", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg"} {
		if _, ok := ChecksumAddress(bad); ok {
			t.Errorf("ChecksumAddress(%q) accepted", bad)
		}
	}
}

// TestBuiltInNetworksAreChecksummed: every LINK address of the table is in EIP-55 case, which the node requires.
func TestBuiltInNetworksAreChecksummed(t *testing.T) {
	for name, n := range Networks {
		if err := CheckAddress(n.LinkContract); err != nil {
			t.Errorf("%s: %s: %v", name, n.LinkContract, err)
		}
	}
}

func TestLinkContractRule(t *testing.T) {
	const good = "0x779877A7B0D9E8603169DdbD7836e478b4624789"
	cases := []struct {
		name, link string
		sentinel   error
		says       []string
	}{
		{"ChecksummedAccepted", good, nil, nil},
		{"AllLowerCaseRefused", strings.ToLower(good), ErrChecksum, []string{"node.link_contract", "EIP-55", "write " + good}},
		{"AllUpperCaseRefused", "0x" + strings.ToUpper(good[2:]), ErrChecksum, []string{"write " + good}},
		{"OneLetterWrongCaseRefused", strings.Replace(good, "Dd", "dd", 1), ErrChecksum, []string{"write " + good}},
		{"UpperCasePrefixRefused", "0X" + good[2:], ErrInvalid, []string{"0x and 40 hex digits"}},
		{"TooShortRefused", good[:41], ErrInvalid, []string{"0x and 40 hex digits"}},
		{"DigitsOnlyAccepted", "0x0000000000000000000000000000000000000001", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal + "  chain_id: 11155111\n  link_contract: '" + tc.link + "'\n"))
			if tc.sentinel == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.Is(err, tc.sentinel) || !errors.As(err, &fe) || fe.Field != "node.link_contract" || fe.ExitCode() != 2 {
				t.Fatalf("got %v, want a node.link_contract error wrapping %v", err, tc.sentinel)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}
