// Command chainlink is a stand-in for the Chainlink node, shipped in a FROM-scratch test image (see package
// standin). The agent runs it exactly as it runs the real image, so it keeps the node's runtime contract
// (the command lines, inputs, HTTP endpoints and exits below) where the agent can observe it, and nothing else.
//
// # Command lines
//
//	chainlink --version | -v
//	chainlink local n -p PASSWORD_FILE -a API_FILE                 1.x: configuration from the environment
//	chainlink node -config C.toml -secrets S.toml start -p P -a A  2.x: TOML (-config, -secrets repeatable)
//	chainlink node -config C.toml -secrets S.toml validate         2.x: check the two files, start nothing
//
// Anything else exits 2 with the usage on stderr. --version prints "chainlink version <version>@standin", the
// real node's format ("chainlink version 2.19.0@<commit>").
//
// # Inputs, checked before anything else (exit 1, one log line naming the input and the rule, never a value)
//
//   - .password (1.x required; 2.x checked when -p is given): one trailing newline dropped; no leading or
//     trailing white space, no maximum. Its strength (16 bytes at least) is judged only when the key ring is
//     empty, as the node does, so a ring sealed with an older, weaker password still opens.
//   - .api: line 1 the e-mail, line 2 the password, both trimmed. The password's rules (16..50 bytes) apply only
//     when .api creates the first user; it may contain the e-mail (that rule is the node's web API's).
//   - 1.x environment: DATABASE_URL (required), ROOT, CHAINLINK_PORT (6688), DATABASE_LOCKING_MODE
//     (lease|advisorylock|dual|none, default dual), LEASE_LOCK_DURATION (10s), LEASE_LOCK_REFRESH_INTERVAL (1s),
//     ADVISORY_LOCK_ID (1027321974924625846), ADVISORY_LOCK_CHECK_INTERVAL (1s), JSON_CONSOLE, LOG_LEVEL,
//     ETH_CHAIN_ID, SKIP_DATABASE_PASSWORD_COMPLEXITY_CHECK.
//   - 2.x config.toml: RootDir, [Log] Level/JSONConsole, [WebServer] HTTPPort (6688), [Database.Lock]
//     Enabled/LeaseDuration/LeaseRefreshInterval (true/10s/1s; refresh at most half the duration),
//     [[EVM]] ChainID. Wrong types are refused; unknown keys are tolerated (the real node refuses them, but
//     extra_toml may carry real keys the stand-in does not model), except the one a release refuses (below).
//     CL_CONFIG is applied after the files.
//   - 2.x secrets.toml: [Database] URL (or env CL_DATABASE_URL, which wins) and AllowSimplePasswords,
//     [Password] Keystore (or CL_PASSWORD_KEYSTORE), both required. Like the real node, a 2.x node refuses 1.x
//     variables in its environment (DATABASE_URL unless equal to CL_DATABASE_URL, ROOT, CHAINLINK_PORT, …).
//   - The database URL is parsed as a URL (user and password percent-encoded); its password must have 16+
//     bytes unless simple passwords are allowed or the URL names a _test database. pgx honours sslmode and
//     sslrootcert.
//   - RootDir/ROOT (default ~/.chainlink) must exist; like the node, its permissions are narrowed to 0700
//     (only its owner may), and a probe file is written and removed.
//
// # Running
//
// Lifecycle events are log lines on stdout whose msg is the event: "starting", "waiting for lease",
// "lease acquired", "listening", "ready", "lease lost", "stopping", "stopped" (and "refusing to start",
// "crash injected", "exit-after elapsed"). Lines are JSON ({"level","ts","logger","msg",...}) unless
// JSONConsole / JSON_CONSOLE is explicitly false (the real node's default is console text).
//
// The lease is the real node's: table lease_lock with a unique index on ((client_id IS NOT NULL)), a random
// client_id per process, one upsert that only overwrites its own or an expired row, retried every refresh
// interval while another node holds it, before the HTTP port opens. A holder that finds another holder exits 1
// at once; a holder cut off from the database only logs. SIGTERM/SIGINT: HTTP stops, the lease is released
// (expires_at = NOW()), exit 0. In 1.x advisorylock/dual mode the session advisory lock is taken too.
//
// Every database session is named as the real node names its own (application_name "Chainlink <version>
// |App|<client_id>", the version CL_STANDIN_VERSION or 0.0.0, the uuid the lease's client_id); the URL's
// application_name is replaced. Once it holds the lease it opens its key ring (encrypted_key_rings, the node's
// keystore V3 format, which agent/keyring reads; a cheaper scrypt than the node's): none, or one never sealed, is
// sealed with the keystore password (-p wins over secrets.toml's); a ring sealed with another password stops it
// with exit 1 and the node's "error authenticating keystore … could not decrypt key with given password".
//
// Once it holds the lease, and before it opens the key ring, it migrates as the real node does (pressly/goose,
// table goose_migrations(id serial, version_id bigint, is_applied boolean, tstamp timestamp default now()),
// created with goose's initial version 0): it records its release's migration (1 unless CL_STANDIN_MIGRATE_TO
// says otherwise) unless a version as high is applied.
//
// Holding intervals are recorded for tests in standin_lease_intervals(id, host, client_id, started_at,
// ended_at): a row on gaining the lock, ended_at = NOW() on each successful refresh and on release, in the
// lease's own transaction. host is CL_STANDIN_HOST or the host name.
//
// # Releases: settings baked into an image (internal/standin.Release, release.go)
//
//   - CL_STANDIN_VERSION: what --version prints and the sessions are named with.
//   - CL_STANDIN_NEVER_READY=1: start connects, takes the lease, migrates, opens the key ring and creates the API
//     user, logs "never becoming ready", and never opens its HTTP port: a real node whose start never returns
//     (the real node listens only once it has booted). The agent's readiness probe, GET /readyz answering 200,
//     never passes. SIGTERM still stops it cleanly, the lease released.
//   - CL_STANDIN_REFUSE_KEY=Section.Key: validate and start refuse a config input (-config files, CL_CONFIG) that
//     has the key, before anything else, exactly as the real node v2.19.0 refuses an unknown key: exit 1, on
//     stderr "Error running app: failed to decode config TOML: " and go-toml's quote of the lines around each
//     occurrence, the key underlined, "missing field".
//   - CL_STANDIN_MIGRATE_TO=N (N > 0): the migration start records in goose_migrations.
//
// # HTTP (port 6688 by default)
//
// /readyz 503 until the lock is held and start-up is done, then 200. /health 200, or 207 when a check fails,
// with the node's JSON:API body ({"data":[{"type":"checks","id","attributes":{"name","status","output"}}]});
// its checks are Database, DatabaseLock (with a lock), EVM.<id> and, as on the node,
// EVM.<id>.HeadTracker.HeadListener. /metrics Prometheus text. POST /sessions {"email","password"} against the
// .api credentials sets the clsession cookie; with it GET /v2/keys/eth and GET /v2/pipeline/runs?size=N answer,
// without it 401.
//
// # Fault injection: files in RootDir
//
//   - standin-crash present at start: exit 1 at once (a crash-looping node).
//   - standin-unready present at start: never ready, listening with /readyz 503 (a service that never gets
//     ready; a never-ready release keeps its port closed instead).
//   - standin-health-fail holding a check name: /health reports that check failing (read per request).
//   - standin-exit-after holding a duration: exit 1 that long after start, without releasing anything.
//   - standin-balances, lines "ADDR ETH": the keys of /v2/keys/eth (read per request).
//   - standin-errored-runs holding a count: that many errored runs in /v2/pipeline/runs (read per request).
//   - standin-dial-chain present at start: model the chain client as the real node has it. Without the file the
//     chain counts as connected (tests run nodes whose chain URL the container cannot reach and need them
//     healthy). With it the stand-in keeps a WebSocket to each primary [[EVM.Nodes]] WSURL (1.x ETH_URL); while
//     none is open, EVM.<id>.HeadTracker.HeadListener fails ("Listener is not connected": /health 207) and
//     /v2/keys/eth gives ethBalance and linkBalance null unless standin-balances is there. Heads are not read.
package main
