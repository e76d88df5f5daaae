//go:build unix && !linux

package childproc

import "syscall"

// SysProcAttr is the portable part of the Linux version: there is no
// parent-death signal, so a child outlives a caller that crashes; it still
// runs as cred and leads its own process group.
func SysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
