package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pelletier/go-toml/v2"
)

// A release of the stand-in (internal/standin.Release) is settings baked into its image as environment variables:
//
//	CL_STANDIN_VERSION      what --version prints and the sessions are named with (appname.go)
//	CL_STANDIN_NEVER_READY  1: start takes the lease, migrates, opens the key ring, and never opens its HTTP port
//	CL_STANDIN_REFUSE_KEY   Section.Key: validate and start refuse a config input that has it, in the node's words
//	CL_STANDIN_MIGRATE_TO   N > 0: the migration start records before it is ready (default migrationDefault)
//
// The real node runs its migrations (pressly/goose v3, table goose_migrations: v2.19.0
// core/store/migrate/migrate.go, database.NewStore(goose.DialectPostgres, "goose_migrations")) when it starts,
// once it holds the lease and before it opens the key ring (core/cmd/shell.go NewApplication); the agent reads the
// highest applied version to know whether a new release's node has passed the point of no return (agent/pair).
// The stand-in records one version the same way.

// Release settings, read from the environment.
const (
	envVersion    = "CL_STANDIN_VERSION"
	envNeverReady = "CL_STANDIN_NEVER_READY"
	envRefuseKey  = "CL_STANDIN_REFUSE_KEY"
	envMigrateTo  = "CL_STANDIN_MIGRATE_TO"
)

// migrationDefault is the migration every stand-in release records unless CL_STANDIN_MIGRATE_TO says otherwise: a
// real node that is ready has always applied migrations (test/realnode's contract fact h), so every stand-in has
// one; a release "with new migrations" records a higher one.
const migrationDefault = 1

// gooseTable is goose's version table as goose v3.21.1 (v2.19.0's) creates it for PostgreSQL
// (internal/dialect/dialectquery/postgres.go), under the name Chainlink gives it.
const gooseTable = `CREATE TABLE goose_migrations (
		id serial NOT NULL,
		version_id bigint NOT NULL,
		is_applied boolean NOT NULL,
		tstamp timestamp NULL default now(),
		PRIMARY KEY(id)
	)`

// migrateTo is the migration this release records.
func migrateTo(env lookupEnv) (int64, error) {
	v, ok := env(envMigrateTo)
	if !ok || v == "" {
		return migrationDefault, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, &inputError{Source: envSource, Key: envMigrateTo, Err: fmt.Errorf("%w %q: want a positive number", errInvalid, v)}
	}
	return n, nil
}

// migrate records version in goose_migrations unless a version as high is applied there: a newer release's
// migrations applied, an older release's start changing nothing. Like goose, a missing table is created with its
// initial version 0 in the same transaction.
func migrate(ctx context.Context, conn *pgx.Conn, version int64) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('goose_migrations') IS NOT NULL`).Scan(&exists); err != nil {
			return fmt.Errorf("look for goose_migrations: %w", err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, gooseTable); err != nil {
				return fmt.Errorf("create goose_migrations: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO goose_migrations (version_id, is_applied) VALUES (0, true)`); err != nil {
				return fmt.Errorf("record goose's initial version: %w", err)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO goose_migrations (version_id, is_applied)
SELECT $1, true WHERE NOT EXISTS (SELECT 1 FROM goose_migrations WHERE is_applied AND version_id >= $1)`, version)
		if err != nil {
			return fmt.Errorf("record migration %d: %w", version, err)
		}
		return nil
	})
}

// neverReady reports whether this release never becomes ready.
//
// What "not ready" looks like on the real node v2.19.0: it opens no HTTP port until it is booted. It takes the
// database lease first (a second node on the same database blocks there, "Another application is currently
// holding the database lease", its port closed: REAL-WORLD.md), migrates, opens its key ring and creates the API
// user, then starts its services (app.Start), and only once they have started does it listen (core/cmd
// shell_local.go runNode: Runner.Run after app.Start); /readyz then answers 503 while a service is not ready and
// 200 once all are (about 3 s after start on an empty database, measured). A release that cannot boot is one whose
// start never returns: a running process that holds the lease, whose port refuses every connection. That is what
// CL_STANDIN_NEVER_READY models; the agent treats a node as ready only when GET /readyz on its port answers 200
// (agent/container ready.go, agent/health node_readyz), which a closed port never does. The standin-unready fault
// file models the other way to fail: listening, /readyz 503 for ever.
func neverReady(env lookupEnv) bool {
	v, _ := env(envNeverReady)
	return v == "1"
}

// refusalError is the real node's refusal of a config input it cannot decode. v2.19.0 decodes every config input
// strictly (chainlink-common config.DecodeTOML: go-toml's DisallowUnknownFields, the error go-toml's human text of
// each unknown key: the lines around it quoted, the key underlined, "missing field"), in the `node` command's
// Before hook, so validate and start alike end there: "Error running app: failed to decode config TOML: …" on
// stderr, exit 1, nothing else printed. The quoted lines are config.toml's (or CL_CONFIG's), which hold no secret;
// the agent masks their values (agent/container NodeReason) as it does for the real node.
type refusalError struct {
	human string // go-toml's StrictMissingError.String(), in v2.2.2's words
}

func (e *refusalError) Error() string { return "failed to decode config TOML: " + e.human }

// refusedKey refuses the config inputs (the -config files in order, then CL_CONFIG, as the node reads them) when one
// of them has the key this release refuses. A path element may pass through an array of tables ("EVM.Nodes.WSURL"
// is refused in any [[EVM.Nodes]]). An input that cannot be read or parsed is left to the decoder proper.
func refusedKey(env lookupEnv, configFiles []string) error {
	key, ok := env(envRefuseKey)
	if !ok || key == "" {
		return nil
	}
	path := strings.Split(key, ".")
	var inputs [][]byte
	for _, f := range configFiles {
		if b, err := readInput(f); err == nil {
			inputs = append(inputs, b)
		}
	}
	if v, ok := env("CL_CONFIG"); ok && v != "" {
		inputs = append(inputs, []byte(v))
	}
	for _, data := range inputs {
		if err := refuse(data, path); err != nil {
			return err
		}
	}
	return nil
}

// refuse decodes data strictly into a type that takes every key but the one at path, so go-toml itself reports
// that key in the words the node's go-toml uses.
func refuse(data []byte, path []string) error {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	target := reflect.New(strictType(doc, path))
	err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(target.Interface())
	var strict *toml.StrictMissingError
	if !errors.As(err, &strict) {
		return nil // the key is not there (or the decoder proper reports what else is wrong)
	}
	human := make([]string, len(strict.Errors))
	for i, e := range strict.Errors {
		// go-toml v2.4 says "unknown field" under the key where v2.2.2, the node's, says "missing field".
		human[i] = pointerLine.ReplaceAllString(e.String(), "${1}missing field")
	}
	return &refusalError{human: strings.Join(human, "\n---\n")} // StrictMissingError.String's separator
}

// pointerLine is the line of go-toml's human error that underlines the key: " | ~~~~~~~~~ unknown field".
var pointerLine = regexp.MustCompile(`(?m)^(\s*\|\s*~+ )unknown field$`)

var anyType = reflect.TypeFor[any]()

// strictType is a struct with a field for every key of table except path[0] when it is the last element; the key on
// the path has a strict type of its own, every other key takes any value. Keys are tags (toml:"key"); a key with a
// comma in it is not modelled (go-toml would read the comma as an option).
func strictType(table map[string]any, path []string) reflect.Type {
	keys := slices.Sorted(maps.Keys(table))
	fields := make([]reflect.StructField, 0, len(keys))
	for i, k := range keys {
		typ := anyType
		if k == path[0] {
			if len(path) == 1 {
				continue
			}
			typ = strictValueType(table[k], path[1:])
		}
		fields = append(fields, reflect.StructField{Name: "F" + strconv.Itoa(i), Type: typ,
			Tag: reflect.StructTag("toml:" + strconv.Quote(k))})
	}
	return reflect.StructOf(fields)
}

// strictValueType is the type of a value on the path: a table's strict struct, or a slice of one for an array of
// tables (one struct taking the keys of every element); any other value takes anything.
func strictValueType(v any, path []string) reflect.Type {
	switch v := v.(type) {
	case map[string]any:
		return strictType(v, path)
	case []any:
		merged := map[string]any{}
		for _, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return anyType
			}
			mergeTables(merged, m)
		}
		return reflect.SliceOf(strictType(merged, path))
	}
	return anyType
}

// mergeTables adds src's keys to dst: tables merged, arrays concatenated, so the merged table has every key of every
// element at every depth.
func mergeTables(dst, src map[string]any) {
	for k, v := range src {
		switch sv := v.(type) {
		case map[string]any:
			dv, ok := dst[k].(map[string]any)
			if !ok {
				dv = map[string]any{} // a copy: the document's own tables stay as they are
				dst[k] = dv
			}
			mergeTables(dv, sv)
		case []any:
			if dv, ok := dst[k].([]any); ok {
				dst[k] = append(slices.Clip(dv), sv...)
				continue
			}
			dst[k] = sv
		default:
			dst[k] = v
		}
	}
}
