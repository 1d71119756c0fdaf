//go:build unix

package simulation

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time, user and system, the process has used so far;
// -1 when the system does not say.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
