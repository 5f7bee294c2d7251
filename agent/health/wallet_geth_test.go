package health

import (
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// fakeNodeKeys serves the node's API as far as the wallet check reads it, in the shape of the real node
// (v2.19.0): POST /sessions sets the clsession cookie; GET /v2/keys/eth lists the keys with ethBalance in wei and
// linkBalance in juels, both whole numbers in decimal strings.
type fakeNodeKeys struct {
	mu   sync.Mutex
	keys []fakeKey
}

type fakeKey struct{ address, wei, juels string }

func (f *fakeNodeKeys) set(keys ...fakeKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = keys
}

func (f *fakeNodeKeys) start(t *testing.T) string {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sessions", func(w http.ResponseWriter, r *http.Request) {
		var login struct{ Email, Password string }
		if json.NewDecoder(r.Body).Decode(&login) != nil || login.Email != apiEmail || login.Password != apiPassword {
			http.Error(w, `{"errors":[{"detail":"Invalid email or password"}]}`, http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "clsession", Value: "session-1", Path: "/"})
		fmt.Fprint(w, `{"data":{"type":"session","id":"sessionID","attributes":{"authenticated":true}}}`)
	})
	mux.HandleFunc("GET /v2/keys/eth", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("clsession"); err != nil || c.Value != "session-1" {
			http.Error(w, `{"errors":[{"detail":"Unauthorized"}]}`, http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var data []map[string]any
		for _, k := range f.keys {
			data = append(data, map[string]any{"type": "eTHKeys", "id": k.address, "attributes": map[string]any{
				"address": k.address, "evmChainID": "1337", "nextNonce": 0, "ethBalance": k.wei, "linkBalance": k.juels,
				"disabled": false, "createdAt": "2026-11-28T00:00:00Z", "updatedAt": "2026-11-28T00:00:00Z",
				"maxGasPriceWei": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
			}})
		}
		w.Header().Set("Content-Type", "application/vnd.api+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestWalletBalanceFromGethIsExact(t *testing.T) {
	t.Parallel()
	g := testenv.GethT(t)
	ctx := testContext(t, time.Minute)
	const key = "0x00000000000000000000000000000000000000d4"
	if err := g.Fund(ctx, key, big.NewInt(50_000_000_000_000_000)); err != nil { // 0.05 ETH
		t.Fatal(err)
	}
	wei, err := g.Balance(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	node := &fakeNodeKeys{}
	node.set(fakeKey{address: key, wei: wei.String(), juels: "2500000000000000000"})
	api := NewNodeAPI(node.start(t), (&credentialsBox{email: apiEmail, password: apiPassword}).get)
	log, sink := newTestLogger()
	run := func(minETH float64) Result {
		t.Helper()
		res, ok := RunOnce(ctx, WalletBalances(api, minETH, time.Second, 2*time.Second, log), nil)
		if !ok {
			t.Fatal("the test context ended")
		}
		return res
	}

	res := run(0.1)
	if res.OK || !strings.Contains(res.Detail, key+" has 0.05 ETH") || !strings.Contains(res.Detail, "under the 0.1 ETH minimum") {
		t.Errorf("0.05 ETH against a 0.1 minimum: ok=%v %q; want a failure naming the key and its balance", res.OK, res.Detail)
	}
	if v, _ := sampleValue(res, metricWalletLow, ""); v != 1 {
		t.Errorf("wallet low = %v; want 1", v)
	}
	// The figure is geth's eth_getBalance: exactly in the detail, as the nearest float in the metric.
	want, _ := new(big.Rat).SetFrac(wei, big.NewInt(1_000_000_000_000_000_000)).Float64()
	if v, ok := sampleValue(res, metricWalletBalance, key); !ok || v != want || v != 0.05 {
		t.Errorf("balance sample = %v %v; want %v (geth's %s wei)", v, ok, want, wei)
	}
	if v, _ := sampleValue(res, metricLinkBalance, key); v != 2.5 {
		t.Errorf("LINK balance sample = %v; want 2.5 (2500000000000000000 juels)", v)
	}
	if !strings.Contains(sink.String(), `"balance_wei":"`+wei.String()+`"`) {
		t.Errorf("the low-balance warning lacks the exact balance:\n%s", sink.String())
	}

	for _, minETH := range []float64{0.05, 0.02} { // exactly the balance, and under it: passing
		if res := run(minETH); !res.OK {
			t.Errorf("0.05 ETH against a %v minimum: %q; want a pass", minETH, res.Detail)
		}
	}
	if res := run(0.2); res.OK {
		t.Errorf("0.05 ETH against a 0.2 minimum passed: %q", res.Detail)
	}

	// One wei under the minimum fails, even where a float64 cannot tell the two apart.
	if err := g.Fund(ctx, key, new(big.Int).Sub(new(big.Int).Mul(big.NewInt(1000), weiPerETH), big.NewInt(50_000_000_000_000_001))); err != nil {
		t.Fatal(err)
	}
	if wei, err = g.Balance(ctx, key); err != nil || wei.String() != "999999999999999999999" {
		t.Fatalf("balance after the second funding = %v %v; want 1000 ETH less one wei", wei, err)
	}
	node.set(fakeKey{address: key, wei: wei.String(), juels: "0"})
	if res := run(1000); res.OK || !strings.Contains(res.Detail, "has 999.999999999999999999 ETH") {
		t.Errorf("1000 ETH less one wei against a 1000 minimum: ok=%v %q; want a failure with the exact balance", res.OK, res.Detail)
	}
}
