package keyring

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Verdict is what the node's key ring says of a keystore password. The zero value is no verdict: Check returns it
// with every error, so a caller that forgets the error never reads it as Empty.
type Verdict int

const (
	// Empty: the node has no key ring yet (no row in encrypted_key_rings, or no such table: not migrated). The
	// node makes one at its next start with whatever password it is given, if that password passes its strength
	// rule (secrets.CheckKeystorePassword with keystoreEmpty = true).
	Empty Verdict = iota + 1
	// Opens: the node would unlock its key ring with this password. It is also the verdict for a key ring row
	// that holds no keys yet (encrypted_keys NULL, left by a first start that stopped before saving a key): the
	// node then accepts any non-empty password, without its strength rule, and seals its first key with it.
	Opens
	// DoesNotOpen: the node would refuse this password ("could not decrypt key with given password") and exit.
	// The empty password never opens: the node refuses it before trying ("no password provided").
	DoesNotOpen
)

func (v Verdict) String() string {
	switch v {
	case Empty:
		return "empty"
	case Opens:
		return "opens"
	case DoesNotOpen:
		return "does not open"
	}
	return fmt.Sprintf("no verdict (%d)", int(v))
}

// Table is where the node keeps its key ring (v2.19.0 migration 0060_combine_keys_tables.sql: encrypted_keys jsonb,
// updated_at timestamptz), one row, read with "SELECT * FROM encrypted_key_rings LIMIT 1" (keystore/orm.go).
const Table = "encrypted_key_rings"

// queryTimeout bounds the read of the key ring row, whatever the caller's deadline.
const queryTimeout = 10 * time.Second

// readQuery reads the row the node reads (the same LIMIT 1 without an order: the node updates every row when it
// saves, so they do not differ). It never inserts: the node's getEncryptedKeyRing inserts a NULL row when there
// is none, which would turn an empty keystore into one exempt from the strength rule.
const readQuery = "SELECT encrypted_keys FROM " + Table + " LIMIT 1"

// RowQuerier is the one call Check makes; *pgx.Conn, *pgxpool.Pool and pgx.Tx have it.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Check reads the node's key ring from db and tells whether password opens it: Read, then Decide.
//
// db must be a session on the node's database as the node's user (the table is found through the same
// search_path). ctx bounds the query (at most queryTimeout) and the wait for the process's one derivation slot.
func Check(ctx context.Context, db RowQuerier, password string) (Verdict, error) {
	ring, err := Read(ctx, db)
	if err != nil {
		return 0, err
	}
	return Decide(ctx, ring, password)
}

// Ring is the node's key ring row as Read found it.
type Ring struct {
	raw   []byte // encrypted_keys; nil when NULL
	found bool   // a row exists
}

// Read reads the node's key ring row from db (one query, bounded by queryTimeout): a caller that holds a shared
// connection releases it before Decide's derivation.
func Read(ctx context.Context, db RowQuerier) (Ring, error) {
	raw, found, err := read(ctx, db)
	return Ring{raw: raw, found: found}, err
}

// Decide tells whether password opens ring, the way the node decides at its start (v2.19.0,
// keystore.encryptedKeyRing.Decrypt): scrypt on "master-password-" + password, then the MAC of the key ring's
// CryptoJSON. It only verifies the MAC: it decrypts no key.
//
// Cost, at the node's default parameters (N=2^18, r=8, p=1): 256 MiB allocated for the derivation and one to a
// few seconds of one core (BenchmarkCheck: see the package doc); a key ring whose parameters cost more than that
// is refused with ErrTooCostly before any work. A verdict is a function of the ring's bytes and the password
// alone, so it is remembered (see memo): asked again for the same pair, Decide answers at once, and a ring the node
// re-sealed or a new password is derived afresh. ctx bounds the wait for the process's one derivation slot; the
// derivation itself, once begun, runs to its end. Errors: ErrMalformed, ErrUnsupported, ErrTooCostly (the row will
// not change by itself). The password never appears in an error.
func Decide(ctx context.Context, ring Ring, password string) (Verdict, error) {
	if !ring.found {
		return Empty, nil
	}
	if len(ring.raw) == 0 {
		// A row without keys: the node's Decrypt returns a new key ring for any password.
		if password == "" {
			return DoesNotOpen, nil
		}
		return Opens, nil
	}
	s, err := parse(ring.raw)
	if err != nil {
		return 0, fmt.Errorf("the node's key ring (%s.encrypted_keys): %w", Table, err)
	}
	if password == "" {
		return DoesNotOpen, nil
	}
	if err := acquire(ctx); err != nil {
		return 0, fmt.Errorf("wait for the key ring check already running: %w", err)
	}
	defer release()
	key := memoKey(ring.raw, password)
	if v, ok := memo.get(key); ok { // a check that ran while this one waited for the slot counts too
		return v, nil
	}
	derivations.Add(1)
	ok, err := s.opens(password)
	// scrypt's 256 MiB buffer is garbage now; return it to the host (which runs the node) before the next
	// derivation rather than let the heap grow to twice that under GOGC. A full GC of the agent's small heap: ms.
	debug.FreeOSMemory()
	if err != nil {
		return 0, fmt.Errorf("the node's key ring (%s.encrypted_keys): %w", Table, err)
	}
	v := DoesNotOpen
	if ok {
		v = Opens
	}
	memo.put(key, v)
	return v, nil
}

// read returns the key ring row's encrypted_keys (nil when NULL) and whether there is a row. A missing table
// (undefined_table, 42P01: the node has not run its migrations yet) is no row.
func read(ctx context.Context, db RowQuerier) (raw []byte, found bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	err = db.QueryRow(qctx, readQuery).Scan(&raw)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case errors.As(err, &pgErr) && pgErr.Code == "42P01":
		return nil, false, nil
	case err != nil && qctx.Err() != nil && ctx.Err() == nil:
		return nil, false, fmt.Errorf("read the node's key ring (%s) timed out after %s: %w", Table, queryTimeout, err)
	case err != nil:
		return nil, false, fmt.Errorf("read the node's key ring (%s): %w", Table, err)
	}
	return raw, true, nil
}

// slot holds the process's one scrypt derivation: each takes 256 MiB at the node's defaults, and two at once on
// a host that also runs the node would double that for no gain. Buffered to 1: a send takes the slot.
var slot = make(chan struct{}, 1)

func acquire(ctx context.Context) error {
	select {
	case slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func release() { <-slot }
