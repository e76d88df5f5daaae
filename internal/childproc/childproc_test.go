package childproc

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// start starts args as a child that the test kills at cleanup.
func start(t *testing.T, args ...string) *Child {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = SysProcAttr(nil, syscall.SIGKILL)
	c, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.SignalGroup(syscall.SIGKILL)
		<-c.Done()
	})
	return c
}

func waitDone(t *testing.T, c *Child) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done was not closed")
	}
}

func TestStartReportsExit(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int // exit code Err must report; 0: a nil error
	}{
		{"success", []string{"sh", "-c", "exit 0"}, 0},
		{"failure", []string{"sh", "-c", "exit 3"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := start(t, tt.args...)
			waitDone(t, c)
			var ee *exec.ExitError
			switch err := c.Err(); {
			case tt.code == 0 && err != nil:
				t.Fatalf("exited with %v, want success", err)
			case tt.code != 0 && (!errors.As(err, &ee) || ee.ExitCode() != tt.code):
				t.Fatalf("exited with %v, want exit code %d", err, tt.code)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	c, err := Start(exec.Command("/nonexistent/orderflow-child"))
	if err == nil || c != nil {
		t.Fatalf("starting a missing program: %v, %v; want an error and no child", c, err)
	}
}

// TestOwnProcessGroup: the child leads its own process group, so a
// terminal's Ctrl-C does not reach it directly.
func TestOwnProcessGroup(t *testing.T) {
	c := start(t, "sleep", "30")
	pgid, err := syscall.Getpgid(c.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if pgid != c.Pid() {
		t.Fatalf("child %d is in process group %d, want its own", c.Pid(), pgid)
	}
}
