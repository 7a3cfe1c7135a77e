//go:build !linux

package main

import (
	"context"
	"errors"
)

// poller is Linux-only; elsewhere every connection gets a read goroutine.
type poller struct{}

const pollSupported = false

func newPoller() (*poller, error)         { return nil, errors.New("epoll needs Linux") }
func (p *poller) add(c *wconn) error      { return errors.New("epoll needs Linux") }
func (p *poller) remove(c *wconn)         {}
func (p *poller) run(ctx context.Context) {}
