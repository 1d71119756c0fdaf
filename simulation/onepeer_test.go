package simulation

import (
	"os"
	"testing"
	"time"

	"github.com/rpe-project/engine/internal/units"
)

// TestSimOnePeer fetches one release from the publisher alone, in virtual
// time: RPE_SIM_ONEPEER bytes (e.g. 64MiB) over a 100 MiB/s link with
// RPE_SIM_ONEPEER_LATENCY one-way delay per access link (default 1ms, so a
// round trip takes 4ms). CPU costs nothing in the bubble, so the figure is
// the pipeline alone: how much of the link the requests in flight and the
// upload slots keep busy (goal: near 1). It is skipped unless
// RPE_SIM_ONEPEER is set; the real-clock counterpart is BenchmarkOnePeer.
func TestSimOnePeer(t *testing.T) {
	v := os.Getenv("RPE_SIM_ONEPEER")
	if v == "" {
		t.Skip("set RPE_SIM_ONEPEER=SIZE to fetch SIZE from one peer in virtual time")
	}
	size, err := units.ParseSize(v)
	if err != nil || size <= 0 {
		t.Fatalf("RPE_SIM_ONEPEER=%q: %v", v, err)
	}
	lat := time.Millisecond
	if v := os.Getenv("RPE_SIM_ONEPEER_LATENCY"); v != "" {
		if lat, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	const link = 100 << 20
	rep := runVirtual(t, Scenario{
		Nodes: 1, Size: size, Up: link, PublisherUp: link, Latency: lat, Seed: 1,
		Timeout: 10 * time.Minute, Logger: testLogger(t),
	})
	if rep.Completed != 1 || rep.TAllS == nil || rep.TAwareP99S == nil {
		t.Fatalf("completed %d of 1", rep.Completed)
	}
	took := *rep.TAllS - *rep.TAwareP99S
	t.Logf("%s in %.3f s after the node learnt of it: %.1f MiB/s over a %d MiB/s link (%.2f of it); publisher %.2f copies\n%s",
		v, took, float64(size)/(1<<20)/took, link>>20, float64(size)/took/link, float64(rep.PublisherUploadBytes)/float64(size), rep.Summary())
}
