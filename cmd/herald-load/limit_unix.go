//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// checkFileLimit fails early, with the fix in the message, when this
// process could not hold n sockets (Go raises the soft limit to the hard
// one at start-up, so the hard limit is what counts).
func checkFileLimit(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // not knowable here; the dials will say
	}
	if uint64(n)+64 > lim.Cur {
		return fmt.Errorf("%d connections need %d file descriptors but the limit is %d: raise ulimit -n or use more workers (-per-worker)", n, n+64, lim.Cur)
	}
	return nil
}
