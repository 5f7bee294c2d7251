package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pelletier/go-toml/v2"
)

// A release of the stand-in (internal/standin.Release) is settings baked into its image as environment variables:
//
//	CL_STANDIN_VERSION      what --version prints (appname.go)
//	CL_STANDIN_NEVER_READY  1: never ready, as the standin-unready fault file
//	CL_STANDIN_REFUSE_KEY   Section.Key: validate and start refuse a config.toml that has it
//	CL_STANDIN_MIGRATE_TO   N: the migration start records before it is ready (default migrationDefault)
//
// The real node runs its migrations (pressly/goose, table goose_migrations: v2.19.0 core/store/migrate/migrate.go)
// when it starts, before it is ready; the agent reads the highest applied version to know whether a new release's
// node has passed the point of no return (agent/pair). The stand-in records one version the same way.

// migrationDefault is the migration every stand-in release records unless CL_STANDIN_MIGRATE_TO says otherwise.
const migrationDefault = 1

// goose's table, as goose v3 creates it for PostgreSQL.
const gooseDDL = `CREATE TABLE IF NOT EXISTS goose_migrations (
  id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp DEFAULT now())`

// migrateTo is the migration this release records.
func migrateTo(env lookupEnv) (int64, error) {
	v, ok := env("CL_STANDIN_MIGRATE_TO")
	if !ok || v == "" {
		return migrationDefault, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, &inputError{Source: "environment", Key: "CL_STANDIN_MIGRATE_TO", Err: fmt.Errorf("%w %q: want a positive number", errInvalid, v)}
	}
	return n, nil
}

// migrate records version in goose_migrations unless a version as high is there: a newer release's migrations
// applied, an older release's start changing nothing.
func migrate(ctx context.Context, conn *pgx.Conn, version int64) error {
	if _, err := conn.Exec(ctx, gooseDDL); err != nil {
		return fmt.Errorf("create goose_migrations: %w", err)
	}
	_, err := conn.Exec(ctx, `INSERT INTO goose_migrations (version_id, is_applied)
SELECT $1, true WHERE NOT EXISTS (SELECT 1 FROM goose_migrations WHERE is_applied AND version_id >= $1)`, version)
	if err != nil {
		return fmt.Errorf("record migration %d: %w", version, err)
	}
	return nil
}

// neverReady reports whether this release never becomes ready.
func neverReady(env lookupEnv) bool {
	v, _ := env("CL_STANDIN_NEVER_READY")
	return v == "1"
}

// refusedKey refuses the config files when one of them has the key this release refuses.
func refusedKey(env lookupEnv, files []string) error {
	key, ok := env("CL_STANDIN_REFUSE_KEY")
	if !ok || key == "" {
		return nil
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := toml.Unmarshal(b, &doc); err != nil {
			return nil // the decoder proper reports it
		}
		if hasKey(doc, strings.Split(key, ".")) {
			return &inputError{Source: path, Key: key, Err: errors.New("unknown key: this release does not have it")}
		}
	}
	return nil
}

func hasKey(doc map[string]any, path []string) bool {
	v, ok := doc[path[0]]
	if !ok || len(path) == 1 {
		return ok
	}
	sub, ok := v.(map[string]any)
	return ok && hasKey(sub, path[1:])
}
