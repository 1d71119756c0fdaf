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
	// RPE_SIM_TRACE=1 logs the run every half second (virtual): nodes
	// aware and verified, the publisher's upload and all chunk bytes
	// moved in that half second, to see where the time goes.
	var onProgress func(Progress)
	if os.Getenv("RPE_SIM_TRACE") != "" {
		var lastPub, lastMoved int64
		onProgress = func(p Progress) {
			t.Logf("trace %6.2fs %-8s aware %3d verified %3d  publisher +%4d KiB (%5.2f copies)  moved +%6d KiB",
				p.Elapsed.Seconds(), p.Phase, p.Aware, p.Verified, (p.PublisherSent-lastPub)>>10,
				float64(p.PublisherSent)/float64(max(p.Size, 1)), (p.Moved-lastMoved)>>10)
			lastPub, lastMoved = p.PublisherSent, p.Moved
		}
	}
	start := time.Now()
	rep := runVirtual(t, Scenario{
		Nodes: n, Size: 4 << 20, ChunkSize: chunk, Up: 512 << 10, PublisherUp: 512 << 10, Seed: 1,
		Timeout: 10 * time.Minute, Logger: testLogger(t), OnProgress: onProgress,
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
