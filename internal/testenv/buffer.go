package testenv

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects what the goroutines of a test write (a logger's lines, a
// child process's output); it is safe for concurrent use. The zero Buffer
// is ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the non-empty lines written so far that contain substr
// (every one for "").
func (b *Buffer) Lines(substr string) []string {
	var out []string
	for l := range strings.SplitSeq(b.String(), "\n") {
		if l != "" && strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
