package main

import (
	"os/exec"
	"runtime"
)

// startLocked starts cmd from a goroutine locked to its OS thread for the
// child's whole life, then calls exited with Wait's result. Linux sends the
// parent-death signal when the thread that forked the child exits, not the
// process, so an unlocked goroutine could have its thread retired by the Go
// runtime and take the child down early.
func startLocked(cmd *exec.Cmd, exited func(error)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine, after the
		// child has been reaped.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited(cmd.Wait())
	}()
	return <-started
}
