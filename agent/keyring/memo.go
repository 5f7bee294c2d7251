package keyring

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// memoSize bounds the verdicts remembered: a host sees one key ring and, across a rotation, two or three
// passwords; a full memo starts over.
const memoSize = 8

// memo remembers the verdicts of derivations already made, keyed by a SHA-256 of the ring's bytes and the
// password (in memory only, like the password itself): the check before every start of the node is then one query
// when nothing changed, instead of the node's scrypt (seconds, 256 MiB) on the takeover's critical path.
var memo = verdicts{m: map[[sha256.Size]byte]Verdict{}}

type verdicts struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]Verdict
}

func (v *verdicts) get(k [sha256.Size]byte) (Verdict, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	verdict, ok := v.m[k]
	return verdict, ok
}

func (v *verdicts) put(k [sha256.Size]byte, verdict Verdict) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.m) >= memoSize {
		clear(v.m)
	}
	v.m[k] = verdict
}

// memoKey is the memo's key of a ring's bytes and a password; the lengths keep any two pairs apart.
func memoKey(raw []byte, password string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(raw))))
	h.Write(raw)
	h.Write([]byte(password))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// derivations counts the derivations Decide made, for tests.
var derivations atomic.Int64
