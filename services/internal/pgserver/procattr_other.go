//go:build unix && !linux

package pgserver

import "syscall"

// sysProcAttr is the portable part of the Linux version: without Pdeathsig a
// server outlives a caller that crashes.
func sysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
