//go:build !unix

package main

import "syscall"

// setRcvBuf keeps the system's buffer size where it cannot be set the
// same way; the slow-consumer tests then need more data to fill it.
func setRcvBuf(syscall.RawConn, int) error { return nil }
