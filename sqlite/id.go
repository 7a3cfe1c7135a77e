package sqlite

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// newEpoch returns 16 random hex characters. 64 bits make it vanishingly
// unlikely that a recreated store reuses an epoch a client still remembers.
func newEpoch() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand.Read panics rather than err)
	return hex.EncodeToString(b[:])
}

// newID returns a 32-character hex id: 48 bits of unix milliseconds followed
// by 80 random bits. The time prefix makes ids sort roughly in acceptance
// order (handy in logs and indexes); the random part keeps them unique
// across processes and nodes without coordination.
func newID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:]) // never fails
	return hex.EncodeToString(b[:])
}
