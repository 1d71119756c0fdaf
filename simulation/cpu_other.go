//go:build !unix

package simulation

import "time"

// cpuTime is -1: this system's process CPU time is not read here.
func cpuTime() time.Duration { return -1 }
