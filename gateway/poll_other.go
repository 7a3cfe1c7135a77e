//go:build !linux

package gateway

import (
	"context"
	"errors"
	"net"
	"time"
)

// poller is the epoll readiness loop; it exists only on Linux.
type poller struct{}

func newPoller(*Gateway) (*poller, error) {
	return nil, errors.New("epoll is Linux-only")
}

func (*poller) run(context.Context) {}
func (*poller) add(*conn) error     { return errors.New("epoll is Linux-only") }
func (*poller) remove(*conn)        {}
func (*poller) waitWritable(*conn, time.Time) error {
	return errors.New("epoll is Linux-only")
}

// takeFD never takes a descriptor off Linux: every connection keeps its
// net.Conn and conn.fd stays noFD, so the functions below are never called.
func (*Gateway) takeFD(net.Conn) (int32, bool) { return noFD, false }

var errNoEpoll = errors.New("epoll is Linux-only")

func writeFD(int32, []byte) (int, error)    { return 0, errNoEpoll }
func writevFD(int32, [][]byte) (int, error) { return 0, errNoEpoll }
func shutdownWrite(int32) error             { return errNoEpoll }
