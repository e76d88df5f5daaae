package pgserver

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/internal/childproc"
)

// killRemains SIGKILLs the PostgreSQL processes still serving this data
// directory and waits until they are gone or ctx ends. After a SIGKILLed
// postmaster its backends and workers live on for a while (each leads its
// own session, so the postmaster's process group does not hold them) and
// keep its shared memory attached, which a new postmaster refuses to share.
//
// A process counts when it runs the postgres binary in the data directory:
// every PostgreSQL process changes into its data directory, and the binary
// keeps an operator's shell that happens to stand there out of it. Call it
// only while no postmaster of ours runs.
func (s *Server) killRemains(ctx context.Context) error {
	dataDir, err := filepath.EvalSymlinks(s.dataDir())
	if err != nil {
		return fmt.Errorf("pgserver: data dir: %w", err)
	}
	exe, err := filepath.EvalSymlinks(filepath.Join(s.bin, "postgres"))
	if err != nil {
		return fmt.Errorf("pgserver: postgres binary: %w", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	// A killed process loses its working directory and binary links while
	// it exits, before it is gone: serving stops listing it early, so the
	// ones killed are also waited for by pid.
	killed := map[int]bool{}
	for {
		pids := serving(dataDir, exe)
		for pid := range killed {
			if !childproc.Alive(pid) {
				delete(killed, pid)
			}
		}
		if len(pids) == 0 && len(killed) == 0 {
			return nil
		}
		for _, pid := range pids {
			// ESRCH: it went on its own since the look.
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
				return fmt.Errorf("pgserver: kill postgres process %d left by the last postmaster: %w", pid, err)
			}
			killed[pid] = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgserver: postgres processes %v of the last postmaster still run: %w", slices.Collect(maps.Keys(killed)), ctx.Err())
		case <-tick.C:
		}
	}
}

// serving lists the live processes that run exe with dir as their working
// directory. A zombie holds no shared memory and cannot be killed, so it
// does not count.
func serving(dir, exe string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		proc := filepath.Join("/proc", e.Name())
		// Links of a process that is gone, or of another user's when we
		// are not root, do not resolve: not ours either way.
		if cwd, err := os.Readlink(filepath.Join(proc, "cwd")); err != nil || cwd != dir {
			continue
		}
		if bin, err := os.Readlink(filepath.Join(proc, "exe")); err != nil || strings.TrimSuffix(bin, " (deleted)") != exe {
			continue
		}
		if !childproc.Alive(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}
