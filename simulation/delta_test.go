package simulation

import (
	"testing"
	"time"
)

// TestSimDelta: nodes whose installed file holds about three quarters of
// the release's chunks copy those locally (Report.ReusedBytes) and fetch
// only the rest; every node ends with the published bytes.
func TestSimDelta(t *testing.T) {
	skipVirtualUnderRace(t)
	s := Scenario{
		Nodes: 6, Size: 1 << 20, ChunkSize: 64 << 10, Installed: 0.75,
		Up: 2 << 20, PublisherUp: 1 << 20, Latency: 5 * time.Millisecond,
		Seed: 3, Timeout: 45 * time.Second, Logger: testLogger(t),
	}
	rep := runVirtual(t, s)
	t.Logf("\n%s", rep.Summary())
	if rep.Completed != s.Nodes || rep.BadInstalls != 0 {
		t.Fatalf("completed %d of %d, %d bad installs", rep.Completed, s.Nodes, rep.BadInstalls)
	}
	total := int64(s.Nodes) * s.Size
	if rep.ReusedBytes < total/2 || rep.ReusedBytes >= total {
		t.Fatalf("reused %d of %d bytes; want about three quarters", rep.ReusedBytes, total)
	}
	if moved := rep.TotalUploadBytes; moved+rep.ReusedBytes < total || moved > total-rep.ReusedBytes+total/4 {
		t.Errorf("uploaded %d bytes with %d reused of %d", moved, rep.ReusedBytes, total)
	}
}
