package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestChaosUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"chaos", "-h"}, 0},
		{"no orders", []string{"chaos", "--orders", "0"}, 2},
		{"no workers", []string{"chaos", "--workers", "0"}, 2},
		{"no kill interval", []string{"chaos", "--kill-every", "0s"}, 2},
		{"negative rate", []string{"chaos", "--rate", "-1"}, 2},
		{"port base too high", []string{"chaos", "--port-base", "65530"}, 2},
		{"extra args", []string{"chaos", "now"}, 2},
		{"bad flag", []string{"chaos", "--nope"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing here may get as far as starting anything
			var stderr bytes.Buffer
			if got := exitCode(run(ctx, tt.args), &stderr); got != tt.code {
				t.Errorf("exit code %d, want %d (%s)", got, tt.code, stderr.String())
			}
		})
	}
}

var chaosLastLines = regexp.MustCompile(`CHAOS orders (\d+)\nCHAOS kills (\d+)\nCHAOS nats_kills (\d+)\nCHAOS coordinator_kills (\d+)\nCHAOS violations (\d+)\n$`)

// TestChaosSmallRunPasses runs the real command, small: a hundred orders
// while a process is killed every second, at least 20 kills of which 3
// NATS nodes and 3 coordinators, and expects every invariant to hold and
// the report to end with the five CHAOS lines.
func TestChaosSmallRunPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a clustered stack and kills it for about a minute")
	}
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "chaos", "--orders", "100", "--kill-every", "1s", "--seed", "7",
		"--port-base", strconv.Itoa(freePortBase(t, true)), "--settle", "3m")
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("chaos took %s:\n%s", time.Since(start).Round(time.Second), stdout.String())
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("chaos failed (%v); stderr:\n%s", err, stderr.String())
	}
	m := chaosLastLines.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("the output does not end with the five CHAOS lines")
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	if n(1) < 95 {
		t.Errorf("%d orders acknowledged of 100", n(1))
	}
	if n(2) < 20 || n(3) < 3 || n(4) < 3 {
		t.Errorf("kills %d (NATS %d, coordinators %d), want at least 20 (3, 3)", n(2), n(3), n(4))
	}
	if n(5) != 0 {
		t.Errorf("%d violations", n(5))
	}
	out := stdout.String()
	for _, want := range []string{"the stack's output goes to ", "every invariant holds", "replaying projection orders", "replaying projection sagas"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	for _, kind := range []string{"served", "refused", "over_stock", "cancelled"} {
		if !regexp.MustCompile(`(?m)^` + kind + ` +[1-9]`).MatchString(out) {
			t.Errorf("the summary has no acknowledged %s orders", kind)
		}
	}
}
