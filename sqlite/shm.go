package sqlite

import "os"

// shmHeaderSize is the WAL index header at the start of the -shm file: two
// copies of the 48-byte header (https://sqlite.org/walformat.html, "The
// WAL-Index Header"). A writer's commit rewrites both (its change counter,
// frame count and checksums), so the 96 bytes are the same as long as
// nobody committed, and a commit in progress shows as a difference too
// (the copies are written one after the other).
const shmHeaderSize = 96

// shmWatch reads the WAL index header of the database's -shm file, to
// tell the appender when PRAGMA data_version is worth a query (see
// checkExternal). It is a filter only: whenever it cannot read the header
// (no -shm file, a short read, an error) it says "changed", and the query
// decides. Only the appender uses it.
//
// The file is read with pread(2), not mapped: SQLite maps it, and a read
// goes through the same page cache, so it sees what every process's
// SQLite wrote, and a file cut short gives a short read rather than a
// SIGBUS.
type shmWatch struct {
	f      *os.File // nil: no header to read, every check queries
	last   [shmHeaderSize]byte
	lastOK bool // last holds the header read before the last query
	cur    [shmHeaderSize]byte
	curOK  bool // cur holds the header changed read
}

// openShmWatch opens the -shm file of the database at path, in WAL mode
// and open, so the file exists. Failing that, the watch says "changed"
// every time.
func openShmWatch(path string) shmWatch {
	f, err := os.Open(path + "-shm")
	if err != nil {
		return shmWatch{}
	}
	return shmWatch{f: f}
}

// changed reads the header and reports whether it differs from the one
// read before the last query (or cannot be read).
func (w *shmWatch) changed() bool {
	w.curOK = false
	if w.f == nil {
		return true
	}
	if n, err := w.f.ReadAt(w.cur[:], 0); n != len(w.cur) || err != nil {
		return true
	}
	w.curOK = true
	return !w.lastOK || w.cur != w.last
}

// queried records that a data_version query ran after the header changed
// read last: that header is now the one to compare with.
func (w *shmWatch) queried() {
	w.last, w.lastOK = w.cur, w.curOK
}

// close closes the file. It must run only after every SQLite connection
// to the database is closed: closing any descriptor of a file drops all
// of the process's POSIX (fcntl) locks on it, SQLite's locks on the -shm
// included.
func (w *shmWatch) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}
