package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orderflow/internal/backoff"
)

// Where the time goes: the saga phase samples the CPU time of every
// process on the machine (Linux /proc) at the start and end of the peak's
// measured window and prints, per service process, per service database's
// PostgreSQL backends and for the rest, the cores used and the CPU time per
// completed saga. On a machine without /proc the table is left out.

// clockTicks is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// this runs on (reading it needs sysconf, which needs cgo).
const clockTicks = 100

type procTimes struct {
	group string
	ticks uint64
}

// cpuSample is the CPU time of each process, and of the whole machine, at
// one moment.
type cpuSample struct {
	at    time.Time
	procs map[int]procTimes
	// busy, steal and all are the machine's non-idle, stolen (by the
	// hypervisor) and total ticks, over every core.
	busy, steal, all uint64
}

var (
	// serveRE finds the service in a service process's command line.
	serveRE = regexp.MustCompile(`(?:^|\x00)serve\x00(\w+)`)
	// backendRE reads a PostgreSQL backend's title: "postgres: USER DB HOST(PORT) STATE".
	backendRE = regexp.MustCompile(`^postgres: (\S+) (\S+) \S+\(\d+\)`)
)

// sampleCPU reads every process's CPU time; stackPID is the dev command's
// process (0: an external stack, recognised only by its processes'
// command lines).
func sampleCPU(stackPID int) (cpuSample, error) {
	s := cpuSample{at: time.Now(), procs: make(map[int]procTimes)}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	// "cpu  user nice system idle iowait irq softirq steal guest
	// guest_nice"; guest time is counted in user time already.
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	for i, f := range strings.Fields(string(line))[1:] {
		if i >= 8 {
			break
		}
		n, _ := strconv.ParseUint(f, 10, 64)
		s.all += n
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			s.steal += n
		default:
			s.busy += n
		}
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return s, err
	}
	self := os.Getpid()
	type proc struct {
		ppid    int
		ticks   uint64
		cmdline []byte
	}
	all := make(map[int]proc)
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue // gone
		}
		// "pid (comm) state ppid ... utime stime ...": comm may hold
		// anything, so fields count from its closing parenthesis.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		utime, _ := strconv.ParseUint(f[11], 10, 64)
		stime, _ := strconv.ParseUint(f[12], 10, 64)
		cmdline, _ := os.ReadFile(dir + "/cmdline")
		all[pid] = proc{ppid: ppid, ticks: utime + stime, cmdline: cmdline}
	}
	// Other PostgreSQL clusters and services may run on the machine too;
	// with the dev command's pid, only its descendants are the stack.
	inStack := func(pid int) bool {
		if stackPID == 0 {
			return true
		}
		for range 16 { // service or postmaster, then backend
			if pid == stackPID {
				return true
			}
			p, ok := all[pid]
			if !ok || p.ppid <= 1 {
				return false
			}
			pid = p.ppid
		}
		return false
	}
	for pid, p := range all {
		group := otherGroup
		if pid == self || inStack(pid) {
			group = processGroup(pid, self, stackPID, p.cmdline)
		}
		s.procs[pid] = procTimes{group: group, ticks: p.ticks}
	}
	return s, nil
}

// processGroup names what a process is for the table.
func processGroup(pid, self, stackPID int, cmdline []byte) string {
	cl := string(cmdline)
	switch {
	case pid == self:
		return "bench client (this process)"
	case pid == stackPID || strings.Contains(cl, "\x00dev\x00--port-base"):
		return "dev command (embedded NATS, log console)"
	}
	if strings.HasPrefix(cl, "nats-node\x00") || strings.Contains(cl, "\x00nats-node\x00") {
		// dev --cluster's NATS nodes, each its own process.
		return "NATS nodes"
	}
	if m := serveRE.FindStringSubmatch(cl); m != nil {
		return "service " + m[1]
	}
	title := strings.TrimRight(cl, "\x00")
	if m := backendRE.FindStringSubmatch(title); m != nil {
		return "PostgreSQL backends, database " + m[2]
	}
	if strings.HasPrefix(title, "postgres:") || strings.Contains(title, "/bin/postgres\x00") || strings.HasSuffix(title, "/bin/postgres") {
		return "PostgreSQL background (WAL writer, checkpointer, ...)"
	}
	return otherGroup
}

// otherGroup is every process neither the stack's nor the benchmark's.
const otherGroup = "other processes on the machine"

// sampleCPUAt samples at from and at to; the channel delivers both
// samples, or closes without them if sampling fails or ctx ends.
func sampleCPUAt(ctx context.Context, stackPID int, from, to time.Time) <-chan [2]cpuSample {
	ch := make(chan [2]cpuSample, 1)
	go func() {
		defer close(ch)
		var samples [2]cpuSample
		for i, at := range []time.Time{from, to} {
			if backoff.Sleep(ctx, time.Until(at)) != nil {
				return
			}
			var err error
			if samples[i], err = sampleCPU(stackPID); err != nil {
				return
			}
		}
		ch <- samples
	}()
	return ch
}

// used sums, per group, the CPU ticks used between a and b.
func used(a, b cpuSample) map[string]uint64 {
	u := make(map[string]uint64)
	for pid, pb := range b.procs {
		pa, ok := a.procs[pid]
		switch {
		case !ok:
			u[pb.group] += pb.ticks // started within the span
		case pb.ticks >= pa.ticks:
			u[pb.group] += pb.ticks - pa.ticks
		}
	}
	return u
}

// reportLoad prints in one line how busy the machine was between a and b,
// and how much of it was not the stack or the benchmark: the figures of a
// shared machine are only as good as its quiet.
func reportLoad(w io.Writer, a, b cpuSample) {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 || b.all <= a.all {
		return
	}
	var stack, other uint64
	for g, t := range used(a, b) {
		if g == otherGroup {
			other += t
		} else {
			stack += t
		}
	}
	cores := func(t uint64) float64 { return float64(t) / clockTicks / secs }
	fmt.Fprintf(w, "  machine %.0f%% busy: the stack and this benchmark %.2f cores, other processes %.2f cores, not attributed %.2f cores\n",
		100*float64(b.busy-a.busy)/float64(b.all-a.all), cores(stack), cores(other), max(cores(b.busy-a.busy)-cores(stack+other), 0))
}

// reportCPU prints the cores each group used between a and b and its CPU
// time per saga completed in that span.
func reportCPU(w io.Writer, a, b cpuSample, sagas int64) {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 || len(a.procs) == 0 {
		return
	}
	type row struct {
		group string
		ticks uint64
	}
	var rows []row
	var total uint64
	for g, t := range used(a, b) {
		rows = append(rows, row{g, t})
		total += t
	}
	slices.SortFunc(rows, func(x, y row) int { return cmp.Compare(y.ticks, x.ticks) })
	perSaga := func(t uint64) string {
		if sagas <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f µs", float64(t)/clockTicks/float64(sagas)*1e6)
	}
	cores := func(t uint64) float64 { return float64(t) / clockTicks / secs }
	fmt.Fprintf(w, "  where the CPU went during the peak's %.1fs window (%d sagas completed):\n", secs, sagas)
	fmt.Fprintf(w, "    %-56s %8s %12s\n", "process", "cores", "per saga")
	for _, r := range rows {
		if r.ticks == 0 {
			continue
		}
		fmt.Fprintf(w, "    %-56s %8.2f %12s\n", r.group, cores(r.ticks), perSaga(r.ticks))
	}
	fmt.Fprintf(w, "    %-56s %8.2f %12s\n", "all processes", cores(total), perSaga(total))
	if b.all > a.all {
		// /proc/stat counts every core's ticks. Busy time no process
		// alive at both ends accounts for went to processes that came and
		// went (a compiler run), to kernel threads and to interrupts.
		busy := b.busy - a.busy
		fmt.Fprintf(w, "    %-56s %8.2f\n", "not attributed (short-lived processes, kernel)", max(cores(busy)-cores(total), 0))
		fmt.Fprintf(w, "    machine: %.0f%% busy over %.0f cores", 100*float64(busy)/float64(b.all-a.all), float64(b.all-a.all)/clockTicks/secs)
		if st := b.steal - a.steal; st > 0 {
			fmt.Fprintf(w, ", %.2f cores stolen by the hypervisor", cores(st))
		}
		fmt.Fprintln(w)
	}
}
