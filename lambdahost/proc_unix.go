//go:build unix

package lambdahost

import (
	"os"
	"syscall"
)

// sysProcAttr puts a function in a process group of its own: a signal then
// reaches whatever it started too (a shell wrapper's child, say), and a
// Ctrl-C at Herald's terminal does not reach it behind Herald's back.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends SIGTERM, or SIGKILL when force, to p's process group.
func signalGroup(p *os.Process, force bool) error {
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	if err := syscall.Kill(-p.Pid, sig); err != nil {
		return p.Signal(sig) // no group (yet): the process itself
	}
	return nil
}
