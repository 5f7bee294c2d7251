package takeover

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/keyring"
)

// KeyRing tells whether password opens the node's key ring, as the node decides (agent/keyring): the row is read
// on the reports' connection, which is free again before the derivation (the node's scrypt: seconds and its
// memory, unless the same ring and password were decided before).
func (d *DB) KeyRing(ctx context.Context, password string) (keyring.Verdict, error) {
	var ring keyring.Ring
	err := d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) (err error) {
		ring, err = keyring.Read(ctx, c)
		return err
	})
	if err != nil {
		return 0, err
	}
	return keyring.Decide(ctx, ring, password)
}
