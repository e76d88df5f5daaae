package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/orderflow/orderflow/projections"
)

// Redraw periods of a progressBar. A terminal gets a bar redrawn in place,
// fast enough to look alive but without flooding a slow terminal; a pipe or
// a log file gets a plain line now and then, so that a log stays readable.
const (
	barRedraw  = 100 * time.Millisecond
	lineRepeat = 3 * time.Second
)

// progressBar shows a rebuild's progress on w. Update may be called from
// any goroutine; Run (redrawing on a terminal while no update arrives, so
// the elapsed time keeps moving during the indexing) and Finish belong to
// the command that owns the bar.
type progressBar struct {
	w     io.Writer
	label string
	tty   bool
	cols  func() int // terminal width

	mu       sync.Mutex
	start    time.Time
	p        projections.Progress
	have     bool
	drawn    time.Time // last output
	onScreen bool      // a bar occupies the current line
	shown    string    // the bar on screen
	barWidth int       // kept once chosen, so the bar does not jump
}

// newProgressBar returns a bar for f: redrawn in place when f is a
// terminal, plain lines otherwise.
func newProgressBar(f *os.File, label string) *progressBar {
	fd := int(f.Fd())
	b := &progressBar{w: f, label: label, tty: term.IsTerminal(fd), start: time.Now()}
	b.cols = func() int {
		if w, _, err := term.GetSize(fd); err == nil && w > 0 {
			return w
		}
		return 80
	}
	return b
}

// Update records p and shows it if the last output is old enough.
func (b *progressBar) Update(p projections.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.p, b.have = p, true
	b.draw(time.Now(), false)
}

// Run redraws the bar on a terminal until ctx ends.
func (b *progressBar) Run(ctx context.Context) {
	if !b.tty {
		return
	}
	t := time.NewTicker(barRedraw)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.mu.Lock()
			b.draw(now, false)
			b.mu.Unlock()
		}
	}
}

// Finish shows the last state and ends the bar's line.
func (b *progressBar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.have {
		return
	}
	b.draw(time.Now(), true)
	if b.tty && b.onScreen {
		fmt.Fprintln(b.w)
		b.onScreen = false
	}
}

// draw writes the current state when forced or when the period since the
// last output has passed; the caller holds mu.
func (b *progressBar) draw(now time.Time, force bool) {
	if !b.have {
		return
	}
	elapsed := now.Sub(b.start)
	if b.tty {
		if !force && now.Sub(b.drawn) < barRedraw {
			return
		}
		line, width := renderBar(b.label, b.p, elapsed, b.cols()-1, b.barWidth)
		if line == b.shown {
			return
		}
		// \r returns to the start of the line, ESC[K clears what a longer
		// earlier bar left behind.
		fmt.Fprintf(b.w, "\r%s\x1b[K", line)
		b.shown, b.barWidth = line, width
		b.onScreen = true
		b.drawn = now
		return
	}
	// The first line comes at once, so that even a short replay shows one.
	if !force && !b.drawn.IsZero() && now.Sub(b.drawn) < lineRepeat {
		return
	}
	fmt.Fprintln(b.w, renderLine(b.label, b.p, elapsed))
	b.drawn = now
}

// phaseLabel names what a rebuild is doing. Progress is reported after
// every batch; after the last batch of the replay the new version's indexes
// are built and the rebuild catches up and swaps, which reports nothing
// until it is done.
func phaseLabel(p projections.Progress) string {
	switch p.Phase {
	case "replay":
		if p.Done >= p.Total {
			return "indexing"
		}
		return "replaying"
	case "catch-up":
		return "catching up"
	case "swap":
		return "swapping"
	case "done":
		return "done"
	}
	return p.Phase
}

func percent(p projections.Progress) float64 {
	if p.Total == 0 || p.Done >= p.Total {
		return 100
	}
	return 100 * float64(p.Done) / float64(p.Total)
}

// tail is what follows the bar: counts, rate and time.
func tail(p projections.Progress, elapsed time.Duration) string {
	s := fmt.Sprintf("%5.1f%%  %s/%s events  %s events/s", percent(p),
		groupDigits(p.Done), groupDigits(p.Total), groupDigits(uint64(p.EventsPerSecond+0.5)))
	switch {
	case p.Phase == "done":
		s += "  took " + shortDuration(elapsed)
	case p.Done < p.Total && p.ETA > 0:
		s += "  ETA " + shortDuration(p.ETA)
	default:
		s += "  elapsed " + shortDuration(elapsed)
	}
	return s
}

// renderBar is the terminal form, fitted into cols columns, and the width
// of its bar: at most 40 and at most maxWidth when that is set, shrinking
// first when the line is too long. Without room for a bar of 10 it is left
// out (width 0).
func renderBar(label string, p projections.Progress, elapsed time.Duration, cols, maxWidth int) (string, int) {
	head := fmt.Sprintf("%s %-11s ", label, phaseLabel(p))
	rest := "  " + tail(p, elapsed)
	// Room is kept for the longest tail of this rebuild, so that the bar
	// keeps its width as the numbers grow.
	longest := "  " + tail(projections.Progress{Phase: "done", Done: p.Total, Total: p.Total, EventsPerSecond: 9_999_999}, time.Hour-time.Second)
	width := min(cols-utf8.RuneCountInString(head)-max(utf8.RuneCountInString(rest), utf8.RuneCountInString(longest))-2, 40)
	if maxWidth > 0 {
		width = min(width, maxWidth)
	}
	if width < 10 {
		return truncateRunes(head+strings.TrimLeft(rest, " "), cols), 0
	}
	filled := int(float64(width) * percent(p) / 100)
	return head + "[" + strings.Repeat("█", filled) + strings.Repeat("░", width-filled) + "]" + rest, width
}

// renderLine is the form for pipes and logs.
func renderLine(label string, p projections.Progress, elapsed time.Duration) string {
	return "replay " + label + ": " + phaseLabel(p) + "  " + tail(p, elapsed)
}

func truncateRunes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// groupDigits writes n with thousands separators: 1234567 -> "1,234,567".
func groupDigits(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// shortDuration rounds d for people: "850ms", "12.3s", "4m05s", "1h02m".
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
