//go:build unix

package main

import "syscall"

// setRcvBuf shrinks a socket's receive buffer, so a client that never
// reads fills up quickly.
func setRcvBuf(rc syscall.RawConn, n int) error {
	var serr error
	err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) })
	if err != nil {
		return err
	}
	return serr
}
