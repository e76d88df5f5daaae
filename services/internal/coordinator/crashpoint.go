package coordinator

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// CrashEnv names the environment variable that makes a coordinator
// process kill itself with SIGKILL at a named point of its work. It exists
// for the tests of ARCHITECTURE property 5 (a saga survives its
// coordinator dying between recording a decision and carrying it out):
// killing the process from outside at a random moment rarely lands in
// that window, and a cancelled context is not a death (deferred code
// runs, messages are handed back). Its value is POINT:N, and the process
// dies the N-th time any of its goroutines passes POINT. The points:
//
//	after-append  a decision's events are in the saga's stream; the
//	              state kept in memory is not updated and the event that
//	              caused the decision is not acknowledged. The relay, woken
//	              by the append, may or may not have published the
//	              decision's commands: both happen.
//
// Unset, as in production, a crash point costs one nil check. A value
// that is not POINT:N with a known point and N >= 1 panics when the
// package is initialised: a test that meant to crash the process must
// not pass because it silently did not. See
// docs/adr/0114-coordinator-crash-tests.md.
const CrashEnv = "ORDERFLOW_CRASH_AT"

// CrashAfterAppend is the crash point right after a decision's append.
const CrashAfterAppend = "after-append"

// crashPoints lists the points CrashEnv may name.
var crashPoints = []string{CrashAfterAppend}

// crashPlan is where and when the process is to die.
type crashPlan struct {
	point  string
	at     int64
	passed atomic.Int64
}

var plannedCrash = mustParseCrashPlan(os.Getenv(CrashEnv))

// parseCrashPlan reads CrashEnv's value; empty means no crash.
func parseCrashPlan(v string) (*crashPlan, error) {
	if v == "" {
		return nil, nil
	}
	point, n, ok := strings.Cut(v, ":")
	at, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || at < 1 {
		return nil, fmt.Errorf("%s=%q: want POINT:N with N >= 1", CrashEnv, v)
	}
	for _, p := range crashPoints {
		if p == point {
			return &crashPlan{point: point, at: at}, nil
		}
	}
	return nil, fmt.Errorf("%s=%q: unknown point %q (known: %s)", CrashEnv, v, point, strings.Join(crashPoints, ", "))
}

func mustParseCrashPlan(v string) *crashPlan {
	p, err := parseCrashPlan(v)
	if err != nil {
		panic(err)
	}
	return p
}

// crashPoint kills the process with SIGKILL if CrashEnv names point and
// this is the N-th pass. It says so on stderr first, unbuffered, so that
// a test can tell the planned death from any other.
func crashPoint(point string) {
	p := plannedCrash
	if p == nil || p.point != point || p.passed.Add(1) != p.at {
		return
	}
	fmt.Fprintf(os.Stderr, "orderflow: crash point %s:%d reached; killing this process with SIGKILL\n", point, p.at)
	self, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = self.Kill() // SIGKILL on Unix
	}
	if err != nil {
		panic(fmt.Sprintf("crash point %s:%d: cannot kill this process: %v", point, p.at, err))
	}
	select {} // nothing more of this decision runs while the signal lands
}
