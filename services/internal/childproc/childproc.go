// Package childproc starts the helper processes orderflow runs itself
// (PostgreSQL for tests and the dev command, the services of the dev
// command) so that they do not outlive the process that started them.
package childproc

import (
	"os/exec"
	"runtime"
)

// Start starts cmd and calls exited, from another goroutine, with Wait's
// result once the child has been reaped. It returns Start's error, in which
// case exited is never called.
//
// The child is started from a goroutine locked to its OS thread for the
// child's whole life: Linux sends the parent-death signal (see SysProcAttr)
// when the thread that forked the child exits, not the process, and the Go
// runtime may retire the thread of an unlocked goroutine at any time, which
// would take the child down early.
func Start(cmd *exec.Cmd, exited func(error)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine, which is
		// harmless once the child has been reaped.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited(cmd.Wait())
	}()
	return <-started
}
