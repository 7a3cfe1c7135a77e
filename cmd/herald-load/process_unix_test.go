//go:build unix

package main

import (
	"errors"
	"syscall"
)

// processExists reports whether pid names a process (signal 0 probes
// without signalling).
func processExists(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
