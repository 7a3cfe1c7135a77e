package main

import "syscall"

// childSysProcAttr starts a foreign server (the peer) in its own process
// group, so that Ctrl-C, which reaches the coordinator's group, leaves it
// to be stopped in order, and has the kernel kill it should the
// coordinator die: unlike the baseline and the workers, it does not stop
// when its stdin closes.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
