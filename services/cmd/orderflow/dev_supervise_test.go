package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRestartPolicy(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	type exit struct {
		after  time.Duration // since t0
		recent int
		delay  time.Duration
		giveUp bool
	}
	tests := []struct {
		name  string
		exits []exit
	}{
		{"doubling until the fifth exit in a minute gives up", []exit{
			{0, 1, 100 * time.Millisecond, false},
			{time.Second, 2, 200 * time.Millisecond, false},
			{2 * time.Second, 3, 400 * time.Millisecond, false},
			{3 * time.Second, 4, 800 * time.Millisecond, false},
			{4 * time.Second, 5, 0, true},
		}},
		{"exits older than the window are forgotten", []exit{
			{0, 1, 100 * time.Millisecond, false},
			{30 * time.Second, 2, 200 * time.Millisecond, false},
			{61 * time.Second, 2, 200 * time.Millisecond, false},
			{92 * time.Second, 2, 200 * time.Millisecond, false},
		}},
		{"an exit a minute apart starts over", []exit{
			{0, 1, 100 * time.Millisecond, false},
			{time.Minute, 1, 100 * time.Millisecond, false},
			{2 * time.Minute, 1, 100 * time.Millisecond, false},
		}},
		{"four quick exits, a quiet minute, four more", []exit{
			{0, 1, 100 * time.Millisecond, false},
			{1 * time.Second, 2, 200 * time.Millisecond, false},
			{2 * time.Second, 3, 400 * time.Millisecond, false},
			{3 * time.Second, 4, 800 * time.Millisecond, false},
			{70 * time.Second, 1, 100 * time.Millisecond, false},
			{71 * time.Second, 2, 200 * time.Millisecond, false},
			{72 * time.Second, 3, 400 * time.Millisecond, false},
			{73 * time.Second, 4, 800 * time.Millisecond, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p restartPolicy
			for i, e := range tt.exits {
				recent, delay, giveUp := p.exited(t0.Add(e.after))
				if recent != e.recent || delay != e.delay || giveUp != e.giveUp {
					t.Fatalf("exit %d at +%s: (%d, %s, %v), want (%d, %s, %v)",
						i+1, e.after, recent, delay, giveUp, e.recent, e.delay, e.giveUp)
				}
			}
		})
	}
	// However many exits a larger budget would allow, the delay stays capped.
	p := restartPolicy{exits: make([]time.Time, 0, 10)}
	for i := range 3 {
		p.exits = append(p.exits, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if _, delay, _ := p.exited(t0.Add(time.Second)); delay > maxRestartDelay {
		t.Errorf("delay %s over the cap %s", delay, maxRestartDelay)
	}
}

func TestStatusBoard(t *testing.T) {
	var out bytes.Buffer
	b := newStatusBoard(&console{w: &out})
	b.add("postgres", 100)
	b.add("inventory", 200)
	exited := time.Now().Add(-3 * time.Second)

	steps := []struct {
		name  string
		child string
		f     func(*childStatus)
		line  string // printed; empty: nothing printed
	}{
		{"first line", "", func(*childStatus) {}, "status: postgres up (restarts 0) | inventory up (restarts 0)"},
		{"exit", "inventory", func(c *childStatus) { c.state, c.lastExit, c.lastExitAt = stateDown, "signal: killed", exited },
			"status: postgres up (restarts 0) | inventory down (restarts 0)"},
		{"same state again", "inventory", func(c *childStatus) { c.lastExit = "signal: killed" }, ""},
		{"restart", "inventory", func(c *childStatus) { c.state, c.restarts, c.pid = stateStarting, c.restarts+1, 201 },
			"status: postgres up (restarts 0) | inventory starting (restarts 1)"},
		{"a pid alone is no change", "inventory", func(c *childStatus) { c.pid = 202 }, ""},
		{"up", "inventory", func(c *childStatus) { c.state = stateUp },
			"status: postgres up (restarts 0) | inventory up (restarts 1)"},
	}
	for _, st := range steps {
		out.Reset()
		b.update(st.child, st.f)
		want := ""
		if st.line != "" {
			want = st.line + "\n"
		}
		if out.String() != want {
			t.Errorf("%s: printed %q, want %q", st.name, out.String(), want)
		}
	}

	table := b.table(time.Now())
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines, want a title, a header and 2 rows:\n%s", len(lines), table)
	}
	for i, want := range [][]string{
		{"CHILD", "STATE", "PID", "FOR", "RESTARTS", "LAST", "EXIT"},
		{"postgres", "up", "100", "0s", "0", "-"},
		{"inventory", "up", "202", "0s", "1", "signal:", "killed,", "3s", "ago"},
	} {
		if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("table row %d: %q, want %q", i, got, want)
		}
	}
}

func TestGate(t *testing.T) {
	g := newGate()
	ctx := context.Background()
	if err := g.wait(ctx); err != nil {
		t.Fatalf("wait on a new gate: %v, want it open", err)
	}
	g.set(false)
	g.set(false)
	if g.open() {
		t.Fatal("open after set(false)")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := g.wait(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait on a closed gate: %v, want context.Canceled", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- g.wait(ctx) }()
	g.set(true)
	g.set(true) // a second open must not close the channel twice
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return within 10s of the gate opening")
	}
}

func TestExitReason(t *testing.T) {
	run := func(script string) error { return exec.Command("sh", "-c", script).Run() }
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"clean exit", nil, "exit status 0"},
		{"exit status", run("exit 3"), "exit status 3"},
		{"signal", run("kill -KILL $$"), "signal: killed"},
		{"no process", errors.New("fork/exec: no such file"), "fork/exec: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitReason(tt.err); got != tt.want {
				t.Errorf("exitReason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestKeepsDyingError(t *testing.T) {
	err := &keepsDyingError{name: "inventory", exits: 5, why: "exit status 1", tail: "  listen: address already in use"}
	want := "inventory keeps dying: 5 exits within 1m0s, the last: exit status 1; its last log lines:\n  listen: address already in use"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
