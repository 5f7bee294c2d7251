package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// contractFacts is what one run of the contract scenario observed of a node image. Every field is observed, none
// assumed. Deliberately not compared: the names of the passing checks (the real node has ~23 services, the
// stand-in models four), timings (the stand-in's are its own), the key ring's scrypt cost (the stand-in's is
// cheap on purpose) and the real node's ~15 s of HeadListener failing after a start with a chain client (the
// scenario has none).
type contractFacts struct {
	// (a) /readyz once ready.
	ReadyzStatus int
	// (b) /health while the chain client is unreachable, and its JSON:API body's shape.
	HealthStatus        int
	HealthElementKeys   string // the keys of every data element, sorted and de-duplicated
	HealthTypes         string // the "type" values
	HealthAttributeKeys string // the keys of every attributes object
	HealthIDIsName      bool   // every element's id is its attributes.name
	HealthAnyFailing    bool   // some attributes.status is "failing"
	HeadListenerOutput  string // of the failing check EVM.<chain>.HeadTracker.HeadListener; "" when it passes
	// (c) the node's database sessions.
	SessionsNamedAsNode    bool // every one matches consumerNameRE
	SessionIDs             int  // distinct uuids among one node's sessions (those from its container's address)
	SessionVersionIsImages bool // the version in them is what `chainlink --version` prints
	SessionIDIsLeaseHolder bool // the uuid is lease_lock's client_id
	// (d) a second node on the same database, with its own data directory.
	WaiterAnsweredHTTPWhileHeld bool // any answer on its HTTP port while the first held the lease
	SessionIDsWhileBothRun      int  // the first's distinct uuids plus the second's
	WaiterReadyAfterCleanStop   bool
	WaiterHoldsLeaseAfterStop   bool // lease_lock's client_id is no longer the first's once the second is ready
	// (e) a restart with another API password in .api.
	OldAPIPasswordLogin int // POST /sessions status
	NewAPIPasswordLogin int
	// (f) a start with another keystore password on the database whose key ring exists.
	WrongKeystoreExitCode int  // -1: still running at the bound
	WrongKeystoreLogSays  bool // "could not decrypt key with given password"
	// (h) the node's migrations: applied in goose_migrations, where the agent reads them (agent/pair), by the time
	// the node is ready.
	MigratedBeforeReady bool
	// (g) GET /v2/keys/eth with the session cookie, without a chain.
	KeysStatus        int
	ETHBalanceShapes  string // "wei" (a whole number as a string), "null", or the JSON type and value
	LINKBalanceShapes string
}

// documented is what the agent builds on (DESIGN.md §2, REAL-WORLD.md §1), for a node without a chain client: the
// real node must still show it, and the stand-in must show what the real node shows.
var documented = contractFacts{
	// (a), (b)
	ReadyzStatus: http.StatusOK, HealthStatus: http.StatusMultiStatus,
	HealthElementKeys: "attributes,id,type", HealthTypes: "checks", HealthAttributeKeys: "name,output,status",
	HealthIDIsName: true, HealthAnyFailing: true, HeadListenerOutput: "Listener is not connected",
	// (c), (d)
	SessionsNamedAsNode: true, SessionIDs: 1, SessionVersionIsImages: true, SessionIDIsLeaseHolder: true,
	WaiterAnsweredHTTPWhileHeld: false, SessionIDsWhileBothRun: 2,
	WaiterReadyAfterCleanStop: true, WaiterHoldsLeaseAfterStop: true,
	// (e), (f), (g)
	OldAPIPasswordLogin: http.StatusOK, NewAPIPasswordLogin: http.StatusUnauthorized,
	WrongKeystoreExitCode: 1, WrongKeystoreLogSays: true,
	KeysStatus: http.StatusOK, ETHBalanceShapes: "null", LINKBalanceShapes: "null",
	// (h)
	MigratedBeforeReady: true,
}

// consumerNameRE is the application_name of a node's sessions (see appNameRE), for any version: 1 the version,
// 2 the node's uuid.
var consumerNameRE = regexp.MustCompile(`^Chainlink (\S+) \|App\|` +
	`([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// TestStandinHonoursTheNodeContract runs one scenario against the real node image and against the stand-in image,
// on the files the agent renders and the same PostgreSQL, and fails when the two records disagree, naming every
// fact that differs (and any in which the real node no longer shows what the agent was built on).
func TestStandinHonoursTheNodeContract(t *testing.T) {
	testenv.DockerT(t)
	pg := testenv.PostgresT(t)
	images := []string{realnode.Image(t), standinImage(t)}
	var records [2]*contractFacts
	t.Run("Observe", func(t *testing.T) {
		for i, name := range []string{"RealNode", "Standin"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				f := observeContract(t, pg, images[i])
				t.Logf("%s facts: %+v", name, f)
				records[i] = &f
			})
		}
	})
	if records[0] == nil || records[1] == nil {
		t.Fatal("a scenario run did not finish: nothing to compare")
	}
	if d := diffFacts(*records[0], *records[1]); len(d) > 0 {
		t.Errorf("the stand-in disagrees with the real node (fix the stand-in, internal/standin/cmd/chainlink):\n%s",
			strings.Join(d, "\n"))
	}
	if d := diffFacts(documented, *records[0]); len(d) > 0 {
		t.Errorf("the real node no longer shows the documented contract (documented, then real):\n%s", strings.Join(d, "\n"))
	}
}

// observeContract is the scenario: a first node on a fresh database (a, b, g, c), a second node beside it (d), a
// restart with another .api password (e) and one with another keystore password (f).
func observeContract(t *testing.T, pg *testenv.Postgres, image string) contractFacts {
	var f contractFacts
	s := realnode.Render(t, pg)
	modelChain(t, s.Files.DataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	db := superConn(t, ctx, pg, s.Config.Node.Database.Name)
	email, password := s.Config.Node.APIEmail, s.Secrets.APIPassword.Reveal()

	first := realnode.Start(t, image, s.Files, s.Cmd)
	t.Logf("first node ready in %s", first.WaitReady(readyBound).Round(time.Millisecond))
	f.ReadyzStatus, _ = first.Get("/readyz")
	migrated, err := pair.MigrationVersion(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	f.MigratedBeforeReady = migrated > 0
	code, body, err := first.GetBody("/health")
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	f.observeHealth(t, code, body, fmt.Sprintf("EVM.%d.HeadTracker.HeadListener", s.Config.Node.EVMChains()[0].ChainID))
	f.observeKeys(t, ctx, first.URL, email, password)

	// A node's sessions are those from its container's address, whatever they are named.
	firstAddr := first.IPAddress()
	ids, named, version := consumerIDs(t, nodeSessions(t, ctx, db, s), firstAddr)
	holder, _ := leaseHolder(t, ctx, db)
	f.SessionsNamedAsNode, f.SessionIDs = named, len(ids)
	f.SessionVersionIsImages = version == imageVersion(t, image)
	f.SessionIDIsLeaseHolder = len(ids) == 1 && ids[0] == holder

	other := s.Files
	other.DataDir = realnode.DataDir(t)
	modelChain(t, other.DataDir)
	waiter := realnode.Start(t, image, other, s.Cmd)
	waiterAddr := waiter.IPAddress()
	testenv.WaitFor(t, leaseLogBound, "the second node's database sessions", func() bool {
		return slices.ContainsFunc(nodeSessions(t, ctx, db, s), func(x session) bool { return x.addr == waiterAddr })
	})
	// The nodes try the lease once per LeaseRefreshInterval (1 s): four refreshes of the holder's lease seen
	// after the second node was up mean it tried, and was held off, for some three seconds.
	refreshes := map[time.Time]bool{}
	if !testenv.Poll(leaseLogBound, 100*time.Millisecond, func() bool {
		if code, err := waiter.Get("/readyz"); err == nil {
			t.Logf("the second node answered /readyz %d while the first held the lease", code)
			f.WaiterAnsweredHTTPWhileHeld = true
		}
		if id, expires := leaseHolder(t, ctx, db); id == holder {
			refreshes[expires] = true
		}
		return len(refreshes) >= 4
	}) {
		t.Fatalf("the first node's lease was refreshed %d times in %s; want 4", len(refreshes), leaseLogBound)
	}
	both := nodeSessions(t, ctx, db, s)
	firstIDs, _, _ := consumerIDs(t, both, firstAddr)
	waiterIDs, _, _ := consumerIDs(t, both, waiterAddr)
	f.SessionIDsWhileBothRun = len(firstIDs) + len(waiterIDs)
	first.Stop()
	f.WaiterReadyAfterCleanStop = testenv.Poll(readyBound, 50*time.Millisecond, waiter.Ready)
	now, _ := leaseHolder(t, ctx, db)
	f.WaiterHoldsLeaseAfterStop = now != "" && now != holder
	waiter.Stop()

	rotated := s.Secrets
	rotated.APIPassword = secrets.NewSecret("api-Other-P@ssword-"+testenv.RandomHex(8), "rotated")
	restarted := startWith(t, image, s, rotated)
	restarted.WaitReady(readyBound)
	f.OldAPIPasswordLogin = loginStatus(t, ctx, restarted.URL, email, password)
	f.NewAPIPasswordLogin = loginStatus(t, ctx, restarted.URL, email, rotated.APIPassword.Reveal())
	restarted.Stop()

	refused := startWithKeystorePassword(t, image, s, "keystore-Other-P@ssword-"+testenv.RandomHex(8))
	f.WrongKeystoreExitCode = -1
	if testenv.Poll(refusedExitBound, 100*time.Millisecond, func() bool { return !refused.Running() }) {
		f.WrongKeystoreExitCode = refused.ExitCode()
	}
	f.WrongKeystoreLogSays = strings.Contains(refused.Logs(), "could not decrypt key with given password")
	return f
}

// observeHealth records the shape of a /health answer and the output of the failing check listener.
func (f *contractFacts) observeHealth(t *testing.T, code int, body []byte, listener string) {
	t.Helper()
	var doc struct {
		Data []map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/health (%d) is not JSON: %v\n%s", code, err, body)
	}
	f.HealthStatus, f.HealthIDIsName = code, len(doc.Data) > 0
	var elemKeys, types, attrKeys []string
	for _, d := range doc.Data {
		elemKeys = append(elemKeys, keysOf(d)...)
		var typ, id string
		_ = json.Unmarshal(d["type"], &typ)
		_ = json.Unmarshal(d["id"], &id)
		types = append(types, typ)
		var attrs map[string]json.RawMessage
		_ = json.Unmarshal(d["attributes"], &attrs)
		attrKeys = append(attrKeys, keysOf(attrs)...)
		var a struct{ Name, Status, Output string }
		_ = json.Unmarshal(d["attributes"], &a)
		f.HealthIDIsName = f.HealthIDIsName && id == a.Name
		if a.Status == "failing" {
			f.HealthAnyFailing = true
			if a.Name == listener {
				f.HeadListenerOutput = a.Output
			}
		}
	}
	f.HealthElementKeys, f.HealthTypes, f.HealthAttributeKeys = set(elemKeys), set(types), set(attrKeys)
}

// observeKeys logs in as the operator and records the shapes of the balances of the node's EVM keys.
func (f *contractFacts) observeKeys(t *testing.T, ctx context.Context, base, email, password string) {
	t.Helper()
	c, err := login(ctx, base, email, password)
	if err != nil {
		t.Fatal(err)
	}
	var keys struct {
		Data []struct {
			Attributes map[string]any `json:"attributes"`
		} `json:"data"`
	}
	testenv.WaitFor(t, time.Minute, "the node's EVM key", func() bool {
		resp, err := c.Get(base + "/v2/keys/eth")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		f.KeysStatus = resp.StatusCode
		return json.NewDecoder(resp.Body).Decode(&keys) == nil && len(keys.Data) > 0
	})
	var eth, link []string
	for _, k := range keys.Data {
		eth = append(eth, balanceShape(k.Attributes["ethBalance"]))
		link = append(link, balanceShape(k.Attributes["linkBalance"]))
	}
	f.ETHBalanceShapes, f.LINKBalanceShapes = set(eth), set(link)
}
