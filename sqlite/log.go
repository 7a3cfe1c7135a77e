package sqlite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/herald-gw/herald"
)

// The append log. An Append is durable once its messages are in the log,
// written with one write(2) per group of Appends: from then on a crash of
// the process, even kill -9, cannot lose them, because the kernel holds the
// bytes (the same guarantee the WAL with synchronous=NORMAL gave each
// commit). The applier (see applier.go) later moves the log into the tables
// in large transactions; Open replays what it had not moved yet.
//
// The log is a sequence of segment files next to the database,
// "<db>-log.<gen>", gen a growing 16-digit hex number. A segment starts
// with a header, the magic "HRLDLOG1", the length of the store's epoch as
// a uint32 (little endian) and the epoch, so that segments left next to a
// restored backup, which gets a new epoch, are never applied to it. Then
// come frames, one per group of Appends:
//
//	length  uint32, little endian: the payload's length
//	crc     uint32, little endian: CRC-32C of the payload
//	payload records, back to back
//
// and a record is one message:
//
//	uvarint len(user), user, uvarint offset, uvarint len(id), id,
//	varint ts (unix nanoseconds), uvarint len(data), data
//
// A frame is all or nothing: a torn frame (the process died in the middle
// of the write, or the disk lost the file's tail) fails its length or its
// checksum and is dropped with everything after it, and none of its
// messages had been acknowledged. The tables record how far the log has been
// applied (meta key log_applied, "<gen>:<pos>", written in the applying
// transaction itself), so a replay never applies a frame twice.

// logSuffix names the segments: "<db>-log.<gen>". SQLite uses -wal, -shm
// and -journal, the lock -lock.
const logSuffix = "-log."

// frameHeader is the length and checksum before each frame's payload.
const frameHeader = 8

// maxFrame bounds a frame's payload. The largest frame is one group
// commit's messages; a length past this is garbage, not a frame.
const maxFrame = 1 << 30

// segmentBytes is about how large a segment grows before the appender
// starts the next one. The applier deletes a segment once everything in it
// is in the tables.
const segmentBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const segmentMagic = "HRLDLOG1"

// segmentHeader returns the header of a segment of the store with epoch.
func segmentHeader(epoch string) []byte {
	b := append([]byte(segmentMagic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[len(segmentMagic):], uint32(len(epoch)))
	return append(b, epoch...)
}

// readSegmentHeader returns the epoch in the header at the start of b and
// the header's length.
func readSegmentHeader(b []byte) (string, int, error) {
	const fixed = len(segmentMagic) + 4
	if len(b) < fixed || string(b[:len(segmentMagic)]) != segmentMagic {
		return "", 0, errTorn
	}
	n := binary.LittleEndian.Uint32(b[len(segmentMagic):])
	if n > 256 || uint64(len(b)-fixed) < uint64(n) {
		return "", 0, errTorn
	}
	return string(b[fixed : fixed+int(n)]), fixed + int(n), nil
}

// errTorn means the bytes do not start with a whole, intact frame.
var errTorn = errors.New("torn or damaged log frame")

// logRecord is one message as the log holds it.
type logRecord struct {
	user herald.UserID
	off  uint64
	id   string
	ts   int64
	data []byte
}

// appendRecord appends r's encoding to b.
func appendRecord(b []byte, user herald.UserID, off uint64, id string, ts int64, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(user)))
	b = append(b, user...)
	b = binary.AppendUvarint(b, off)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendVarint(b, ts)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// beginFrame appends room for a frame header to b and returns where the
// frame starts; sealFrame fills the header in once the records follow.
func beginFrame(b []byte) ([]byte, int) {
	return append(b, make([]byte, frameHeader)...), len(b)
}

func sealFrame(b []byte, start int) []byte {
	payload := b[start+frameHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// decodeFrame decodes the frame at the start of b, which is untrusted (a
// file on disk), and returns its records and the frame's length. Record
// strings are copied; data slices point into b. It fails with errTorn when b
// does not start with a whole frame whose checksum matches and whose
// payload is a sequence of well-formed records.
func decodeFrame(b []byte) ([]logRecord, int, error) {
	if len(b) < frameHeader {
		return nil, 0, errTorn
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > maxFrame || uint64(len(b)-frameHeader) < uint64(n) {
		return nil, 0, errTorn
	}
	payload := b[frameHeader : frameHeader+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0, errTorn
	}
	var recs []logRecord
	for p := payload; len(p) > 0; {
		var (
			r   logRecord
			ok  bool
			str []byte
		)
		if str, p, ok = readBytes(p); !ok || len(str) == 0 {
			return nil, 0, errTorn
		}
		r.user = herald.UserID(str)
		if r.off, p, ok = readUvarint(p); !ok || r.off == 0 || r.off >= 1<<63 {
			return nil, 0, errTorn
		}
		if str, p, ok = readBytes(p); !ok {
			return nil, 0, errTorn
		}
		r.id = string(str)
		v, k := binary.Varint(p)
		if k <= 0 {
			return nil, 0, errTorn
		}
		r.ts, p = v, p[k:]
		if r.data, p, ok = readBytes(p); !ok {
			return nil, 0, errTorn
		}
		recs = append(recs, r)
	}
	return recs, frameHeader + int(n), nil
}

func readUvarint(p []byte) (uint64, []byte, bool) {
	v, k := binary.Uvarint(p)
	if k <= 0 {
		return 0, p, false
	}
	return v, p[k:], true
}

func readBytes(p []byte) ([]byte, []byte, bool) {
	n, p, ok := readUvarint(p)
	if !ok || n > uint64(len(p)) {
		return nil, p, false
	}
	return p[:n:n], p[n:], true
}

// logPos is a place in the log: a segment and a byte offset in it.
type logPos struct{ gen, pos int64 }

func (p logPos) String() string { return fmt.Sprintf("%d:%d", p.gen, p.pos) }

func parseLogPos(s string) (logPos, error) {
	g, p, ok := strings.Cut(s, ":")
	gen, err1 := strconv.ParseInt(g, 10, 64)
	pos, err2 := strconv.ParseInt(p, 10, 64)
	if !ok || err1 != nil || err2 != nil || gen < 0 || pos < 0 {
		return logPos{}, fmt.Errorf("%w: bad log position %q in table meta", ErrNotDatabase, s)
	}
	return logPos{gen, pos}, nil
}

func segmentPath(db string, gen int64) string {
	return fmt.Sprintf("%s%s%016x", db, logSuffix, gen)
}

// segments lists the generations of the log segments of the database at
// db, oldest first.
func segments(db string) ([]int64, error) {
	entries, err := os.ReadDir(filepath.Dir(db))
	if err != nil {
		return nil, err
	}
	prefix := filepath.Base(db) + logSuffix
	var gens []int64
	for _, e := range entries {
		hex, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || len(hex) != 16 {
			continue
		}
		g, err := strconv.ParseInt(hex, 16, 64)
		if err != nil || g <= 0 {
			continue
		}
		gens = append(gens, g)
	}
	slices.Sort(gens)
	return gens, nil
}

// removeSegments deletes the segments of db older than gen.
func removeSegments(db string, before int64) error {
	gens, err := segments(db)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gens {
		if g < before {
			if err := os.Remove(segmentPath(db, g)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
