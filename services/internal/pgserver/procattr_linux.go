package pgserver

import "syscall"

// sysProcAttr runs the child as cred (nil: as the caller), in its own process
// group so a terminal's Ctrl-C reaches only the caller, which then stops the
// server in order, and with deathSig delivered if the caller dies first.
func sysProcAttr(cred *syscall.Credential, deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential: cred,
		Setpgid:    true,
		Pdeathsig:  deathSig,
	}
}
