//go:build !linux

package main

import "syscall"

// childSysProcAttr: elsewhere the peer shares the coordinator's process
// group (Ctrl-C stops it too) and is not killed with a dying coordinator.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
