//go:build !unix

package lambdahost

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup kills p: without Unix signals there is no gentler request.
func signalGroup(p *os.Process, _ bool) error { return p.Kill() }
