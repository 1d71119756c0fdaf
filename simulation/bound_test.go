package simulation

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestSimBound runs the data path's scenario (issue "the data path"):
// RPE_SIM_BOUND honest nodes, 4 MiB, every node and the publisher at
// 512 KiB/s up, in virtual time; RPE_SIM_CHUNK sets the chunk size
// (default 256 KiB). The bound is 8 s: the publisher must send 4 MiB at
// 512 KiB/s. It is skipped unless RPE_SIM_BOUND is set, and reports
// ratio_to_bound, the publisher's copies and the waste.
func TestSimBound(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RPE_SIM_BOUND"))
	if n <= 0 {
		t.Skip("set RPE_SIM_BOUND=N to run N nodes in virtual time")
	}
	chunk, _ := strconv.Atoi(os.Getenv("RPE_SIM_CHUNK"))
	start := time.Now()
	rep := runVirtual(t, Scenario{
		Nodes: n, Size: 4 << 20, ChunkSize: chunk, Up: 512 << 10, PublisherUp: 512 << 10, Seed: 1,
		Timeout: 10 * time.Minute, Logger: testLogger(t),
	})
	t.Logf("wall %v\n%s", time.Since(start), rep.Summary())
	if out := os.Getenv("RPE_SIM_JSON"); out != "" {
		if err := rep.WriteJSONFile(out); err != nil {
			t.Fatal(err)
		}
	}
	if rep.Completed != rep.Nodes || rep.BadInstalls != 0 || rep.AddrViolations != 0 {
		t.Errorf("completed %d of %d, bad installs %d, address violations %d", rep.Completed, rep.Nodes, rep.BadInstalls, rep.AddrViolations)
	}
}
