package main

import "syscall"

// childProcAttr puts a service in its own process group, so a terminal's
// Ctrl-C reaches only the dev command, which stops the services in order,
// and has the kernel SIGTERM it should the dev command die first.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
