// Package childproc starts the helper processes orderflow runs itself
// (PostgreSQL for tests and the dev command, the services of the dev
// command) so that they do not outlive the process that started them.
package childproc

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// Child is a process started by Start.
type Child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, readable once done is closed
}

// Start starts cmd and reaps it, from another goroutine, once it exits;
// Done then closes.
//
// The child is started from a goroutine locked to its OS thread for the
// child's whole life: Linux sends the parent-death signal (see SysProcAttr)
// when the thread that forked the child exits, not the process, and the Go
// runtime may retire the thread of an unlocked goroutine at any time, which
// would take the child down early.
func Start(cmd *exec.Cmd) (*Child, error) {
	c := &Child{cmd: cmd, done: make(chan struct{})}
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
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is Wait's result: nil for a clean exit, else why the child ended.
// Call it after Done is closed.
func (c *Child) Err() error { return c.err }

// Signal sends sig to the child alone; once it has been reaped it returns
// os.ErrProcessDone.
func (c *Child) Signal(sig syscall.Signal) error {
	if c.exited() {
		return os.ErrProcessDone
	}
	return c.cmd.Process.Signal(sig)
}

// SignalGroup sends sig to the child's process group, which it leads when
// started with SysProcAttr, so that whatever the child started gets it
// too. Once the child has been reaped its group id may be anyone's, so it
// then returns os.ErrProcessDone.
func (c *Child) SignalGroup(sig syscall.Signal) error {
	if c.exited() {
		return os.ErrProcessDone
	}
	return syscall.Kill(-c.Pid(), sig)
}

func (c *Child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
