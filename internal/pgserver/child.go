package pgserver

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/internal/childproc"
)

// terminate asks PostgreSQL for a fast shutdown (SIGINT), escalates to an
// immediate shutdown (SIGQUIT) after grace or when ctx ends, and finally
// SIGKILLs the process group. It returns once the process is reaped.
func terminate(ctx context.Context, c *childproc.Child, grace time.Duration) {
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
		ctx  bool
	}{
		{syscall.SIGINT, grace, true},
		{syscall.SIGQUIT, 5 * time.Second, false},
	}
	for _, st := range steps {
		_ = c.Signal(st.sig)
		t := time.NewTimer(st.wait)
		var ctxDone <-chan struct{}
		if st.ctx {
			ctxDone = ctx.Done()
		}
		select {
		case <-c.Done():
			t.Stop()
			return
		case <-t.C:
		case <-ctxDone:
			t.Stop()
		}
	}
	// The postmaster leads its own process group (Setpgid); its backends
	// and workers lead their own sessions, so Stop kills those that
	// outlive it separately (killRemains).
	_ = c.SignalGroup(syscall.SIGKILL)
	<-c.Done()
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
