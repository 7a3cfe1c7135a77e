//go:build !linux

package gateway

import (
	"context"
	"errors"
)

// poller is the epoll readiness loop; it exists only on Linux.
type poller struct{}

func newPoller(*Gateway) (*poller, error) {
	return nil, errors.New("epoll is Linux-only")
}

func (*poller) run(context.Context) {}
func (*poller) add(*conn) error     { return errors.New("epoll is Linux-only") }
func (*poller) remove(*conn)        {}

// writeFD is never called off Linux: conn.rc stays nil there.
func writeFD(int32, []byte) (int, error) {
	return 0, errors.New("epoll is Linux-only")
}
