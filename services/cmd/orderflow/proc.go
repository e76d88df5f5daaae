package main

import (
	"os/exec"
	"syscall"

	"github.com/orderflow/orderflow/services/internal/childproc"
)

// startLocked starts a service and calls exited with Wait's result once it
// has been reaped (see childproc.Start).
func startLocked(cmd *exec.Cmd, exited func(error)) error {
	return childproc.Start(cmd, exited)
}

// childProcAttr puts a service in its own process group, so a terminal's
// Ctrl-C reaches only the dev command, which stops the services in order,
// and has the kernel SIGTERM it should the dev command die first (Linux).
func childProcAttr() *syscall.SysProcAttr {
	return childproc.SysProcAttr(nil, syscall.SIGTERM)
}
