package childproc

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestStartReportsExit(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int // exit code exited must see; 0: a nil error
	}{
		{"success", []string{"sh", "-c", "exit 0"}, 0},
		{"failure", []string{"sh", "-c", "exit 3"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(tt.args[0], tt.args[1:]...)
			cmd.SysProcAttr = SysProcAttr(nil, syscall.SIGKILL)
			got := make(chan error, 1)
			if err := Start(cmd, func(err error) { got <- err }); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				var ee *exec.ExitError
				switch {
				case tt.code == 0 && err != nil:
					t.Fatalf("exited with %v, want success", err)
				case tt.code != 0 && (!errors.As(err, &ee) || ee.ExitCode() != tt.code):
					t.Fatalf("exited with %v, want exit code %d", err, tt.code)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("exited was not called")
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	called := make(chan struct{}, 1)
	err := Start(exec.Command("/nonexistent/orderflow-child"), func(error) { called <- struct{}{} })
	if err == nil {
		t.Fatal("starting a missing program succeeded")
	}
	select {
	case <-called:
		t.Fatal("exited was called for a child that never started")
	case <-time.After(50 * time.Millisecond):
	}
}

// TestOwnProcessGroup: the child leads its own process group, so a
// terminal's Ctrl-C does not reach it directly.
func TestOwnProcessGroup(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = SysProcAttr(nil, syscall.SIGKILL)
	done := make(chan struct{})
	if err := Start(cmd, func(error) { close(done) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	pgid, err := syscall.Getpgid(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if pgid != cmd.Process.Pid {
		t.Fatalf("child %d is in process group %d, want its own", cmd.Process.Pid, pgid)
	}
}
