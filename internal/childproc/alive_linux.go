package childproc

import (
	"fmt"
	"os"
	"strings"
)

// Alive reports whether pid is a running process: not gone, and not a
// zombie that nobody reaped (a zombie holds no resources and cannot be
// killed, so for a supervisor it is as good as gone).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	return !zombie(string(b))
}

// zombie reads the state from a /proc/<pid>/stat line, "pid (comm) state
// ...", where comm may hold spaces and parentheses.
func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	st := stat[i+2]
	return st == 'Z' || st == 'X'
}
