package health

import (
	"strings"
	"testing"
)

func TestParseWei(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, want, err string
	}{
		{"1500000000000000000", "1500000000000000000", ""}, // the node's API: whole wei
		{"0", "0", ""},
		{" 42 ", "42", ""},
		{"115792089237316195423570985008687907853269984665640564039457584007913129639935", "115792089237316195423570985008687907853269984665640564039457584007913129639935", ""},
		{"1.500000000000000000", "", "not a whole number of wei"}, // the node's log form, never its API's
		{"0.05", "", "not a whole number of wei"},
		{"1e18", "", "not a whole number of wei"},
		{"-1", "", "not a whole number of wei"},
		{"0x10", "", "not a whole number of wei"},
		{"", "", "empty"},
	}
	for _, tc := range cases {
		got, err := parseWei(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseWei(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
		case err != nil || got.String() != tc.want:
			t.Errorf("parseWei(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestMinimumWeiIsTheDecimalTheOperatorWrote(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{
		0.1:    "100000000000000000", // not the binary 0.1000000000000000055511151231257827
		0.3:    "300000000000000000",
		1000:   "1000000000000000000000",
		0:      "0",
		1e-19:  "1", // finer than a wei: rounds up
		12.345: "12345000000000000000",
	} {
		if got := minimumWei(in).String(); got != want {
			t.Errorf("minimumWei(%v) = %s; want %s", in, got, want)
		}
	}
}

func TestFormatUnits(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"50000000000000000":      "0.05",
		"1000000000000000000":    "1",
		"999999999999999999999":  "999.999999999999999999",
		"1":                      "0.000000000000000001",
		"0":                      "0",
		"1500000000000000000000": "1500",
	} {
		n, _ := parseWei(in)
		if got := formatUnits(n); got != want {
			t.Errorf("formatUnits(%s) = %s; want %s", in, got, want)
		}
	}
}
