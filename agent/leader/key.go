package leader

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"

	"github.com/cl-agent/cl-agent/agent/config"
)

// keyDomain separates the derived key from any other hash of a database name.
const keyDomain = "cl-agent leader lock v1\x00"

// LockKey is the advisory lock key the agents of one deployment share: configured when it is not 0, otherwise
// derived from the database name (the first 8 bytes of a SHA-256, so every host and every agent version computes the
// same key). A derived key is never 0 and never config.NodeLockID1x, the lock Chainlink 1.x nodes take themselves.
// A configured key is returned as is: configuration validation refuses NodeLockID1x, and New refuses it again.
func LockKey(configured int64, dbName string) int64 {
	if configured != 0 {
		return configured
	}
	for salt := 0; ; salt++ {
		input := keyDomain + dbName
		if salt > 0 {
			input += "\x00" + strconv.Itoa(salt)
		}
		sum := sha256.Sum256([]byte(input))
		key := int64(binary.BigEndian.Uint64(sum[:8]))
		if key != 0 && key != config.NodeLockID1x {
			return key
		}
	}
}

// lockTag is how pg_locks shows a session-level advisory lock on a bigint key: the high half in classid, the low
// half in objid, objsubid 1 (objsubid 2 is the two-int4 form).
type lockTag struct {
	classid, objid uint32
}

func tagOf(key int64) lockTag {
	u := uint64(key)
	return lockTag{classid: uint32(u >> 32), objid: uint32(u)}
}
