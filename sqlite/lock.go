package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// One Herald process per file. The writer caches each user's last offset,
// and live clients are fed from the process that accepted a message, so a
// second process writing the same file would hand its messages only to its
// own clients: those of the first would miss them until they reconnect.
// SQLite's own locks serialise transactions, not owners, so Open takes an
// exclusive lock that lasts as long as the Store.
//
// The lock is on a sidecar file, "<db>-lock", not on the database file:
//
//   - SQLite locks the database with fcntl(2) record locks, and a record
//     lock belongs to the (process, inode) pair: closing *any* descriptor of
//     the database file drops every record lock the process holds on it. A
//     lock of our own on the database file needs a descriptor of our own on
//     it, and a failed second Open in the same process would close its
//     descriptor and silently strip the first Store's SQLite locks. A
//     separate inode cannot interfere with SQLite's locking at all, whichever
//     kind (POSIX or OFD) the driver uses.
//   - On BSDs flock(2) and fcntl(2) locks may be one mechanism; on a
//     separate file they cannot conflict.
//   - Tools that read the database while Herald runs (sqlite3 ".backup",
//     VACUUM INTO, litestream) never look at the sidecar, so they are not
//     blocked.
//
// The lock is flock(2) (LockFileEx on Windows): it belongs to the open file,
// so a second Open in the same process conflicts like one in another
// process, and the kernel releases it when the process dies, so a crash
// never leaves a stale lock: the file stays behind but is not locked. It is
// never deleted, because deleting a lock file races: an opener that had
// already opened the old inode and one that creates a new file would each
// hold "the" lock.
//
// Not covered: two different hard links to one database (the sidecar is
// found through the path; symbolic links are resolved), and NFS, where Linux
// emulates flock with fcntl locks that do not conflict within a process (and
// where SQLite's WAL mode does not work anyway).

// lockSuffix names the sidecar. SQLite uses -wal, -shm and -journal next to
// the database, never -lock.
const lockSuffix = "-lock"

// ErrLocked is wrapped by the error Open returns when another Store, in
// this or another process, has the file open.
var ErrLocked = errors.New("another Herald process holds the database file")

// fileLock is the exclusive lock on a database's sidecar file.
type fileLock struct {
	f    *os.File
	path string
}

// lockPathFor returns the sidecar of the database at abs, an absolute path,
// with symbolic links resolved so that two names of one file share it (as
// SQLite itself puts -wal next to the link's target).
func lockPathFor(abs string) string {
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real + lockSuffix
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs)) + lockSuffix // a file yet to be created
	}
	return abs + lockSuffix
}

// lockDB takes the exclusive lock of the database at abs without waiting.
func lockDB(abs string) (*fileLock, error) {
	lp := lockPathFor(abs)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create lock file: %w", err)
	}
	ok, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lp, err)
	}
	if !ok {
		holder := readHolder(f)
		f.Close()
		who := "pid unknown"
		switch {
		case holder == os.Getpid():
			who = "this process already has it open"
		case holder > 0:
			who = "held by pid " + strconv.Itoa(holder)
		}
		return nil, fmt.Errorf("%w (%s, lock file %s): stop the other process or give this one another file", ErrLocked, who, lp)
	}
	// Record the holder for the error a later opener reports. Best effort:
	// the lock is what counts, not the content.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &fileLock{f: f, path: lp}, nil
}

// readHolder returns the pid the holder of the lock wrote, or 0.
func readHolder(f *os.File) int {
	var b [32]byte
	n, _ := f.ReadAt(b[:], 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0
	}
	return pid
}

// release unlocks and closes the sidecar; the file itself stays (see above).
func (l *fileLock) release() error {
	if l == nil {
		return nil
	}
	return errors.Join(unlock(l.f), l.f.Close())
}

// checkPath rejects, before anything is created, the paths SQLite would
// otherwise turn into a confusing error or a surprising file.
func checkPath(path, abs string) error {
	if path == "" || path == ":memory:" {
		return fmt.Errorf("no database file given (%q); a store without a file is package memory", path)
	}
	fi, err := os.Stat(abs)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory, not a database file", abs)
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s)", abs, fi.Mode().Type())
	case err == nil:
		return nil
	}
	// Missing, or not reachable: say which part of the path is wrong.
	dir := filepath.Dir(abs)
	switch di, derr := os.Stat(dir); {
	case errors.Is(derr, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist; create it first", dir)
	case derr == nil && !di.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case errors.Is(err, fs.ErrNotExist):
		return nil // a new file
	}
	return err
}
