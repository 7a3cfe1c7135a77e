// Package sqlitetest damages SQLite files for the tests of the code that
// must notice: the store's start-up check, the store watcher's readiness,
// the command's refusal to start. It lives outside package sqlite so that
// every test in the repository damages a file the same way, and it imports
// nothing of Herald's.
package sqlitetest

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"
)

// CorruptPages overwrites n whole pages in the middle of the database file
// at path with pseudo-random bytes (the same bytes every run) and returns
// the 1-based number of the first. The page size is read from the file's
// header, so any file works; page 1, the header, is never touched. Close
// the store first: its WAL must be checkpointed into the file, or the
// damage lands on pages the WAL would replace. The file must have at least
// 20 pages.
func CorruptPages(t testing.TB, path string, n int) int {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr [100]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		t.Fatal(err)
	}
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 { // the header's way of writing 65536
		pageSize = 65536
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pages := int(fi.Size() / pageSize)
	first := pages / 2
	if pages < 20 || first+n > pages {
		t.Fatalf("only %d pages of %d bytes: fill more", pages, pageSize)
	}
	junk := make([]byte, int64(n)*pageSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(r.Uint32())
	}
	if _, err := f.WriteAt(junk, int64(first-1)*pageSize); err != nil {
		t.Fatal(err)
	}
	return first
}
