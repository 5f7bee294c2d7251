package testenv

import (
	"context"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestGethDevChain(t *testing.T) {
	t.Parallel()
	g := GethT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var id string
	if err := g.Call(ctx, "eth_chainId", &id); err != nil || id != "0x539" {
		t.Fatalf("eth_chainId = %q %v; want 0x539 (1337)", id, err)
	}
	start, err := g.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "a block to be mined with --dev.period 1", func() bool {
		h, err := g.Head(ctx)
		return err == nil && h > start
	})

	const to = "0x00000000000000000000000000000000000000f1"
	amount, _ := new(big.Int).SetString("50000000000000000", 10) // 0.05 ETH
	if err := g.Fund(ctx, to, amount); err != nil {
		t.Fatal(err)
	}
	got, err := g.Balance(ctx, to)
	if err != nil || got.Cmp(amount) != 0 {
		t.Errorf("balance after funding = %v %v; want %s wei", got, err, amount)
	}
}

func TestGethWithoutPeriodMinesOnlyTransactions(t *testing.T) {
	t.Parallel()
	g := GethT(t, GethPeriod(0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if h, err := g.Head(ctx); err != nil || h != 0 {
		t.Fatalf("head = %d %v; want 0 before any transaction", h, err)
	}
	if err := g.Fund(ctx, "0x00000000000000000000000000000000000000f2", big.NewInt(1)); err != nil {
		t.Fatal(err)
	}
	if h, err := g.Head(ctx); err != nil || h != 1 {
		t.Errorf("head = %d %v; want 1: one block for the one transaction", h, err)
	}
}

func TestGethRefusesAHostOutsideVHosts(t *testing.T) {
	t.Parallel()
	g := GethT(t, GethVHosts("chain.invalid"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	byName := strings.Replace(g.HTTPURL, "127.0.0.1", "localhost", 1)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, byName,
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "invalid host specified") {
		t.Errorf("POST to %s = %d %q; want 403 invalid host specified", byName, resp.StatusCode, body)
	}
}
