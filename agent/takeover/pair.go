package takeover

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/pair"
)

// The pair's image and its upgrades (agent/pair), on the health reports' connection.

// ReadPair reads the pair's record.
func (d *DB) ReadPair(ctx context.Context) (r pair.Record, err error) {
	err = d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		r, err = pair.Read(ctx, c)
		return err
	})
	return r, err
}

// RecordImage records img as the image this host's node runs: the pair's image.
func (d *DB) RecordImage(ctx context.Context, img image.Image) (r pair.Record, err error) {
	err = d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		r, err = pair.RecordRunning(ctx, c, img, d.instanceID)
		return err
	})
	return r, err
}

// RequestUpgrade asks for the pair to move to candidate (pair.Request).
func (d *DB) RequestUpgrade(ctx context.Context, candidate image.Image, allowDowngrade bool) (r pair.Record, err error) {
	err = d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		r, err = pair.Request(ctx, c, candidate, allowDowngrade, d.instanceID)
		return err
	})
	return r, err
}

// AdvanceUpgrade moves the upgrade to the candidate with candidateDigest from one phase to the next (pair.Advance).
func (d *DB) AdvanceUpgrade(ctx context.Context, candidateDigest string, from, to pair.Phase, reason string, baseline int64) (moved bool, err error) {
	err = d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		moved, err = pair.Advance(ctx, c, candidateDigest, from, to, reason, d.instanceID, baseline)
		return err
	})
	return moved, err
}

// MigrationVersion is the highest migration the node has applied (pair.MigrationVersion).
func (d *DB) MigrationVersion(ctx context.Context) (v int64, err error) {
	err = d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		v, err = pair.MigrationVersion(ctx, c)
		return err
	})
	return v, err
}
