package takeover

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/keyring"
)

// KeyRing tells whether password opens the node's key ring, as the node decides (agent/keyring), on the reports'
// connection. A check costs the node's scrypt (about a second and its memory), so callers make it rarely: before a
// start, and when the keystore password rotates.
func (d *DB) KeyRing(ctx context.Context, password string) (v keyring.Verdict, err error) {
	err = d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) (err error) {
		v, err = keyring.Check(ctx, c, password)
		return err
	})
	return v, err
}
