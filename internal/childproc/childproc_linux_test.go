package childproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a parent that starts a child and
// then waits to be killed (see TestHelperParent).
const helperEnv = "ORDERFLOW_CHILDPROC_HELPER"

// TestHelperParent is not a test of its own: run by TestParentDeathKillsChild
// it starts "sleep 60" with Start, prints the child's pid, makes the Go
// runtime retire threads, and waits to be killed.
func TestHelperParent(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestParentDeathKillsChild")
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = SysProcAttr(nil, syscall.SIGKILL)
	c, err := Start(cmd)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	// Goroutines that lock their thread and return without unlocking it
	// make the runtime end those threads: the child must survive that.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { runtime.LockOSThread() })
	}
	wg.Wait()
	fmt.Println("child", c.Pid())
	time.Sleep(time.Minute)
}

func TestParentDeathKillsChild(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^TestHelperParent$")
	parent.Env = append(os.Environ(), helperEnv+"=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = parent.Process.Kill()
		_ = parent.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper parent: %v (%q)", err, line)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "child "))
	if err != nil {
		t.Fatalf("helper parent said %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	// The threads the helper retired must not have taken the child along.
	time.Sleep(100 * time.Millisecond)
	if !Alive(pid) {
		t.Fatalf("child %d died while its parent lives", pid)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d outlived its parent by 5s", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSignalGroup reaches what the child started; once the child is reaped,
// neither kind of signal is sent.
func TestSignalGroup(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	cmd.SysProcAttr = SysProcAttr(nil, syscall.SIGKILL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.SignalGroup(syscall.SIGKILL)
		<-c.Done()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the grandchild's pid: %v", err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("shell said %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(grandchild, syscall.SIGKILL) })

	if err := c.SignalGroup(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the child outlived SIGTERM to its group by 10s")
	}
	deadline := time.Now().Add(5 * time.Second)
	for Alive(grandchild) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d outlived SIGTERM to the group by 5s", grandchild)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit: %v, want os.ErrProcessDone", err)
	}
	if err := c.SignalGroup(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SignalGroup after exit: %v, want os.ErrProcessDone", err)
	}
}
