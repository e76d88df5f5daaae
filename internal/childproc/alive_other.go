//go:build unix && !linux

package childproc

import "syscall"

// Alive reports whether pid is a process that signals reach. Without
// /proc a zombie counts as alive.
func Alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
