//go:build unix && !linux

package main

import "syscall"

// childProcAttr: without Pdeathsig, services outlive a dev command that
// crashes; they still get their own process group.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
