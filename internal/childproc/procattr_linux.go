package childproc

import "syscall"

// SysProcAttr returns the attributes of a child that runs as cred (nil: as
// the caller) and leads its own process group, so that a terminal's Ctrl-C
// reaches only the caller, which then stops the child in order. The kernel
// sends the child deathSig should the caller die first; start the child
// with Start for that to hold.
func SysProcAttr(cred *syscall.Credential, deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential: cred,
		Setpgid:    true,
		Pdeathsig:  deathSig,
	}
}
