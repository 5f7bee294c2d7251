package health

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// weiPerETH is 10^18: wei per ETH, and likewise juels per LINK.
var weiPerETH = new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)

// parseWei reads an amount the node's API gives: a whole number of wei (or juels) in decimal, as the node has
// sent since 1.x ("1500000000000000000" for 1.5; its assets.Eth marshals the big.Int). Anything else, a decimal
// point included, is an error rather than a guess at the unit: reading wei as ETH is the bug this replaced.
// Nothing goes through a float: the result is exact.
func parseWei(s string) (*big.Int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty amount")
	}
	if strings.TrimLeft(s, "0123456789") != "" {
		return nil, fmt.Errorf("%q is not a whole number of wei", oneLine(s, 40))
	}
	n, _ := new(big.Int).SetString(s, 10)
	return n, nil
}

// minimumWei is a configured minimum in ETH as wei. The configuration holds a float64; its shortest decimal
// form is what the operator wrote ("0.1" stays 0.1 ETH = 10^17 wei, not the binary 0.1000000000000000055…).
// A minimum finer than a wei rounds up to the next wei.
func minimumWei(eth float64) *big.Int {
	if eth <= 0 {
		return new(big.Int)
	}
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(eth, 'f', -1, 64))
	if !ok { // FormatFloat's 'f' form always parses; a programming error, never a reason to panic the agent
		r = new(big.Rat).SetFloat64(eth)
	}
	r.Mul(r, new(big.Rat).SetInt(weiPerETH))
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

// formatUnits writes wei as ETH (juels as LINK) exactly, without trailing zeros: 50000000000000000 → "0.05".
func formatUnits(wei *big.Int) string {
	sign := ""
	n := new(big.Int).Set(wei)
	if n.Sign() < 0 {
		sign, n = "-", n.Neg(n)
	}
	q, r := new(big.Int).QuoRem(n, weiPerETH, new(big.Int))
	if r.Sign() == 0 {
		return sign + q.String()
	}
	frac := strings.TrimRight(fmt.Sprintf("%018s", r.String()), "0")
	return sign + q.String() + "." + frac
}

// unitsFloat is wei as a float number of ETH (juels as LINK), for the metrics only: the nearest float64.
func unitsFloat(wei *big.Int) float64 {
	f, _ := new(big.Rat).SetFrac(wei, weiPerETH).Float64()
	return f
}
