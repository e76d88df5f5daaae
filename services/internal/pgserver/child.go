package pgserver

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/services/internal/childproc"
)

// child is a started process and the outcome of waiting for it.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // Wait's result, readable after done is closed
}

// startChild starts cmd so that it dies with this process (see
// childproc.Start).
func startChild(cmd *exec.Cmd) (*child, error) {
	c := &child{cmd: cmd, done: make(chan struct{})}
	err := childproc.Start(cmd, func(err error) {
		c.err = err
		close(c.done)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// sysProcAttr runs the server as cred (nil: as the caller), in its own
// process group, with deathSig delivered should the caller die first.
func sysProcAttr(cred *syscall.Credential, deathSig syscall.Signal) *syscall.SysProcAttr {
	return childproc.SysProcAttr(cred, deathSig)
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) signal(sig syscall.Signal) error {
	select {
	case <-c.done:
		return os.ErrProcessDone
	default:
	}
	return c.cmd.Process.Signal(sig)
}

// terminate asks PostgreSQL for a fast shutdown (SIGINT), escalates to an
// immediate shutdown (SIGQUIT) after grace or when ctx ends, and finally
// SIGKILLs the process group. It returns once the process is reaped.
func (c *child) terminate(ctx context.Context, grace time.Duration) error {
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
		ctx  bool
	}{
		{syscall.SIGINT, grace, true},
		{syscall.SIGQUIT, 5 * time.Second, false},
	}
	for _, st := range steps {
		_ = c.signal(st.sig)
		t := time.NewTimer(st.wait)
		var ctxDone <-chan struct{}
		if st.ctx {
			ctxDone = ctx.Done()
		}
		select {
		case <-c.done:
			t.Stop()
			return nil
		case <-t.C:
		case <-ctxDone:
			t.Stop()
		}
	}
	// The postmaster leads its own process group (Setpgid), so this takes
	// any backend that outlived it too.
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	<-c.done
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func (b *tailBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = b.buf[:0]
}
