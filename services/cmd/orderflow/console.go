package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"
)

// console serialises the dev stack's output: its own progress lines and
// the children's output, each child line prefixed with its padded name.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
}

func newConsole(f *os.File) *console {
	return &console{w: f, color: term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""}
}

// Printf writes the dev command's own output.
func (c *console) Printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format, args...)
}

// nameWidth fits the longest name shown ("inventory", "postgres").
const nameWidth = 9

var colors = map[string]string{
	"orders":    "36", // cyan
	"inventory": "35", // magenta
	"shipping":  "33", // yellow
	"sagas":     "32", // green
	"postgres":  "34", // blue
}

// Writer returns a writer that prints each line it gets as "name | line",
// also keeping it in tail when tail is not nil.
func (c *console) Writer(name string, tail *lineTail) io.Writer {
	prefix := fmt.Sprintf("%-*s | ", nameWidth, name)
	if c.color {
		if code, ok := colors[name]; ok {
			prefix = "\x1b[" + code + "m" + fmt.Sprintf("%-*s", nameWidth, name) + "\x1b[0m | "
		}
	}
	return &lineWriter{con: c, prefix: prefix, tail: tail}
}

// lineWriter splits what it gets into lines; a partial line waits for its
// end so that lines of different children never interleave.
type lineWriter struct {
	con    *console
	prefix string
	tail   *lineTail
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	// A child that never ends its line must not grow the buffer forever.
	if len(w.buf) > 64<<10 {
		w.emit(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *lineWriter) emit(line string) {
	line = strings.TrimRight(line, "\r")
	if w.tail != nil {
		w.tail.Add(line)
	}
	w.con.mu.Lock()
	defer w.con.mu.Unlock()
	fmt.Fprintf(w.con.w, "%s%s\n", w.prefix, line)
}

// lineTail keeps the last lines of a child's output for error messages.
type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func newLineTail(max int) *lineTail { return &lineTail{max: max} }

func (t *lineTail) Add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// String returns every line kept, indented.
func (t *lineTail) String() string { return t.Last(t.max) }

// Last returns the last n lines kept, indented.
func (t *lineTail) Last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "  (no output)"
	}
	return "  " + strings.Join(lines, "\n  ")
}
