package pair

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/leader"
)

// The one row of the pair (id is always true). Either host creates the table, under the pair's lock (lockSQL).
const (
	ddl = `CREATE TABLE IF NOT EXISTS cl_agent_pair_image (
  id                   boolean PRIMARY KEY DEFAULT true CHECK (id),
  repository           text NOT NULL,
  tag                  text NOT NULL,
  digest               text NOT NULL,
  highest_release      text NOT NULL DEFAULT '',
  recorded_by          text NOT NULL,
  recorded_at          timestamptz NOT NULL DEFAULT now(),
  upgrade_phase        text NOT NULL DEFAULT '',
  candidate_repository text NOT NULL DEFAULT '',
  candidate_tag        text NOT NULL DEFAULT '',
  candidate_digest     text NOT NULL DEFAULT '',
  allow_downgrade      boolean NOT NULL DEFAULT false,
  upgrade_reason       text NOT NULL DEFAULT '',
  upgrade_by           text NOT NULL DEFAULT '',
  upgrade_at           timestamptz,
  migration_baseline   bigint NOT NULL DEFAULT 0)`
	columns = `repository, tag, digest, highest_release, recorded_by, recorded_at, upgrade_phase, candidate_repository,
  candidate_tag, candidate_digest, allow_downgrade, upgrade_reason, upgrade_by, coalesce(upgrade_at, 'epoch'), migration_baseline`
	// migrationsSQL reads where the node's goose keeps its applied migrations (core/store/migrate in the node).
	migrationsSQL = `SELECT coalesce(max(version_id), 0) FROM goose_migrations WHERE is_applied`
)

// Read returns the row; Exists is false when no host has recorded an image yet.
func Read(ctx context.Context, c *pgx.Conn) (Record, error) {
	r, err := scan(c.QueryRow(ctx, "SELECT "+columns+" FROM cl_agent_pair_image"))
	if errors.Is(err, pgx.ErrNoRows) || leader.IsUndefinedTable(err) {
		return Record{}, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("read cl_agent_pair_image: %w", err)
	}
	return r, nil
}

// RecordRunning records img as the pair's image, run by instance by, and raises the highest release. An upgrade
// whose candidate is img is done.
func RecordRunning(ctx context.Context, c *pgx.Conn, img image.Image, by string) (Record, error) {
	return update(ctx, c, func(r *Record) error {
		r.Image, r.RecordedBy = img, by // recorded_at: the write keeps it for the same host and digest
		r.Highest = Higher(r.Highest, img.Tag)
		if r.Upgrade.Phase.InProgress() && r.Upgrade.Candidate.Digest == img.Digest {
			r.Upgrade.Phase, r.Upgrade.Reason, r.Upgrade.By = Done, "", by
		}
		return nil
	})
}

// Request asks for an upgrade to candidate. It refuses while another is under way, before any host recorded an
// image, when the pair already runs the candidate, and (unless allowDowngrade) when it is a downgrade.
func Request(ctx context.Context, c *pgx.Conn, candidate image.Image, allowDowngrade bool, by string) (Record, error) {
	return update(ctx, c, func(r *Record) error {
		switch {
		case !r.Exists:
			return errors.New("no host has run the node yet: there is nothing to upgrade")
		case r.Upgrade.Phase.InProgress():
			return fmt.Errorf("%w: to %s, %s", ErrInProgress, r.Upgrade.Candidate.Tag, r.Upgrade.Phase)
		case r.Image.Digest == candidate.Digest:
			return fmt.Errorf("the pair already runs %s", candidate)
		}
		if !allowDowngrade {
			if err := CheckDowngrade(r.Highest, candidate); err != nil {
				return err
			}
		}
		r.Upgrade = Upgrade{Phase: Requested, Candidate: candidate, AllowDowngrade: allowDowngrade, By: by,
			Reason: "waiting for the standby to pull and validate it"}
		return nil
	})
}

// Advance moves the upgrade to candidate from phase from to phase to, with reason, written by instance by; it
// reports false (and changes nothing) when the upgrade is no longer there: another host moved it, or another
// upgrade replaced it. baseline is recorded when to is Starting.
func Advance(ctx context.Context, c *pgx.Conn, candidateDigest string, from, to Phase, reason, by string, baseline int64) (bool, error) {
	_, err := update(ctx, c, func(r *Record) error {
		// No row: no upgrade to move (and no image to write a row with).
		if !r.Exists || r.Upgrade.Phase != from || r.Upgrade.Candidate.Digest != candidateDigest {
			return errUnchanged
		}
		r.Upgrade.Phase, r.Upgrade.Reason, r.Upgrade.By = to, reason, by
		if to == Starting {
			r.Upgrade.MigrationBaseline = baseline
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return false, nil
	}
	return err == nil, err
}

// MigrationVersion is the highest migration the node has applied to the database (0 before its first start).
func MigrationVersion(ctx context.Context, c *pgx.Conn) (int64, error) {
	var v int64
	err := c.QueryRow(ctx, migrationsSQL).Scan(&v)
	if leader.IsUndefinedTable(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the node's migrations (goose_migrations): %w", err)
	}
	return v, nil
}

var errUnchanged = errors.New("unchanged")

// Writers serialize on a transaction-level advisory lock, taken before anything else, in the two-int4 key space
// ("clag", "pair"): the leader's and the node's own locks take bigint keys, which PostgreSQL keeps apart (objsubid
// 1 and 2), so this lock never waits on theirs. The row lock alone is not enough: before the first host recorded
// an image there is no row to lock (two first writers would both read none, and the second's upsert would overwrite
// the first's highest release with its own), and two concurrent CREATE TABLE IF NOT EXISTS race on the catalog
// (23505 on pg_type_typname_nsp_index).
const lockSQL = `SELECT pg_advisory_xact_lock(x'636c6167'::int, x'70616972'::int)`

// update reads the row, lets change alter it, and writes it back, in one transaction under the pair's lock (and
// the row lock): no two writers interleave a read and a write. A missing table is created under the same lock.
func update(ctx context.Context, c *pgx.Conn, change func(*Record) error) (Record, error) {
	var out Record
	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockSQL); err != nil {
			return fmt.Errorf("lock cl_agent_pair_image: %w", err)
		}
		// Only when missing: CREATE TABLE IF NOT EXISTS still asks for CREATE on the schema when the table exists.
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('cl_agent_pair_image') IS NOT NULL`).Scan(&exists); err != nil {
			return fmt.Errorf("look up cl_agent_pair_image: %w", err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("create cl_agent_pair_image: %w", err)
			}
		}
		r, err := scan(tx.QueryRow(ctx, "SELECT "+columns+" FROM cl_agent_pair_image FOR UPDATE"))
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read cl_agent_pair_image: %w", err)
		}
		if err := change(&r); err != nil {
			return err
		}
		out, err = write(ctx, tx, r)
		return err
	})
	return out, err
}

// write upserts r and returns the row as written.
func write(ctx context.Context, tx pgx.Tx, r Record) (Record, error) {
	u := r.Upgrade
	out, err := scan(tx.QueryRow(ctx, `INSERT INTO cl_agent_pair_image (id, repository, tag, digest, highest_release, recorded_by,
  upgrade_phase, candidate_repository, candidate_tag, candidate_digest, allow_downgrade, upgrade_reason, upgrade_by,
  upgrade_at, migration_baseline)
VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, CASE WHEN $6 = '' THEN NULL ELSE now() END, $13)
ON CONFLICT (id) DO UPDATE SET repository = $1, tag = $2, digest = $3, highest_release = $4, recorded_by = $5,
  recorded_at = CASE WHEN cl_agent_pair_image.digest = $3 AND cl_agent_pair_image.recorded_by = $5
    THEN cl_agent_pair_image.recorded_at ELSE now() END,
  upgrade_phase = $6, candidate_repository = $7, candidate_tag = $8, candidate_digest = $9, allow_downgrade = $10,
  upgrade_reason = $11, upgrade_by = $12,
  upgrade_at = CASE WHEN cl_agent_pair_image.upgrade_phase = $6 AND cl_agent_pair_image.candidate_digest = $9
    THEN cl_agent_pair_image.upgrade_at ELSE now() END,
  migration_baseline = $13
RETURNING `+columns,
		r.Image.Repository, r.Image.Tag, r.Image.Digest, r.Highest, r.RecordedBy,
		string(u.Phase), u.Candidate.Repository, u.Candidate.Tag, u.Candidate.Digest, u.AllowDowngrade, u.Reason, u.By,
		u.MigrationBaseline))
	if err != nil {
		return Record{}, fmt.Errorf("write cl_agent_pair_image: %w", err)
	}
	return out, nil
}

func scan(row pgx.Row) (Record, error) {
	var r Record
	var phase string
	u := &r.Upgrade
	err := row.Scan(&r.Image.Repository, &r.Image.Tag, &r.Image.Digest, &r.Highest, &r.RecordedBy, &r.RecordedAt,
		&phase, &u.Candidate.Repository, &u.Candidate.Tag, &u.Candidate.Digest, &u.AllowDowngrade, &u.Reason, &u.By,
		&u.At, &u.MigrationBaseline)
	if err != nil {
		return Record{}, err
	}
	r.Exists, u.Phase = true, Phase(phase)
	if u.Phase == "" {
		u.At = time.Time{}
	}
	return r, nil
}
