//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package sqlite

import "os"

// tryLock always succeeds: this system has no flock(2) that x/sys exposes
// (Solaris, illumos, AIX, ...). Open then does not detect a second process
// on the same file; docs/operations.md says to run one Herald per file.
func tryLock(*os.File) (bool, error) { return true, nil }

func unlock(*os.File) error { return nil }
