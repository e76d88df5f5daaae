package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestParseCrashPlan(t *testing.T) {
	tests := []struct {
		value   string
		point   string
		at      int64
		wantErr string
	}{
		{value: ""},
		{value: "after-append:1", point: CrashAfterAppend, at: 1},
		{value: "after-append:250", point: CrashAfterAppend, at: 250},
		{value: "after-append", wantErr: "want POINT:N"},
		{value: "after-append:", wantErr: "want POINT:N"},
		{value: "after-append:0", wantErr: "want POINT:N"},
		{value: "after-append:-3", wantErr: "want POINT:N"},
		{value: "after-append:x", wantErr: "want POINT:N"},
		{value: "before-lunch:1", wantErr: `unknown point "before-lunch"`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			p, err := parseCrashPlan(tt.value)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), CrashEnv) {
					t.Errorf("error %v, want one naming %s and saying %q", err, CrashEnv, tt.wantErr)
				}
			case err != nil:
				t.Errorf("error %v", err)
			case tt.point == "":
				if p != nil {
					t.Errorf("plan %+v for an unset variable", p)
				}
			case p == nil || p.point != tt.point || p.at != tt.at:
				t.Errorf("plan %+v, want %s at %d", p, tt.point, tt.at)
			}
		})
	}
}

// crashHelperEnv makes the test binary, started again by
// TestCrashPointKillsTheProcess, pass the crash point until it dies
// instead of running the tests.
const crashHelperEnv = "ORDERFLOW_CRASHPOINT_HELPER"

func init() {
	if os.Getenv(crashHelperEnv) != "1" {
		return
	}
	// plannedCrash was read from the environment before init ran, as in
	// the real binary.
	for i := 1; i <= 5; i++ {
		crashPoint("some-other-point")
		crashPoint(CrashAfterAppend)
		fmt.Printf("passed %d\n", i)
	}
	os.Exit(0)
}

// TestCrashPointKillsTheProcess runs this test binary as a child that
// passes the crash point five times: the process dies of SIGKILL on the
// pass CrashEnv names, after saying so, and nothing after it runs.
func TestCrashPointKillsTheProcess(t *testing.T) {
	tests := []struct {
		env      string
		survives bool
		passed   int
	}{
		{env: "", survives: true, passed: 5},
		{env: "after-append:1", passed: 0},
		{env: "after-append:3", passed: 2},
		{env: "after-append:9", survives: true, passed: 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.env), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashHelperEnv+"=1", CrashEnv+"="+tt.env)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()

			var ee *exec.ExitError
			killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() &&
				ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			switch {
			case tt.survives && err != nil:
				t.Fatalf("helper failed: %v\n%s", err, stderr.String())
			case !tt.survives && !killed:
				t.Fatalf("helper ended with %v, want death by SIGKILL\n%s", err, stderr.String())
			}
			var want strings.Builder
			for i := 1; i <= tt.passed; i++ {
				fmt.Fprintf(&want, "passed %d\n", i)
			}
			if stdout.String() != want.String() {
				t.Errorf("stdout %q, want %q", stdout.String(), want.String())
			}
			said := strings.Contains(stderr.String(), "crash point "+tt.env+" reached")
			if said != !tt.survives {
				t.Errorf("stderr %q: announces the crash %v, want %v", stderr.String(), said, !tt.survives)
			}
		})
	}
}
