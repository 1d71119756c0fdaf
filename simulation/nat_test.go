package simulation

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rpe-project/engine/simulation/netsim"
)

func TestParseNATMix(t *testing.T) {
	m, err := ParseNATMix("none=0.2, port-restricted=0.7,symmetric=0.1")
	if err != nil {
		t.Fatal(err)
	}
	if m[netsim.NATPortRestricted] != 0.7 || m[netsim.NATSymmetric] != 0.1 || m[netsim.NATNone] != 0.2 {
		t.Fatalf("parsed %v", m)
	}
	if got := m.String(); got != "none=0.2,port-restricted=0.7,symmetric=0.1" {
		t.Errorf("String() = %q", got)
	}
	for _, bad := range []string{"cone=0.5", "symmetric", "symmetric=x", "symmetric=0.6,full-cone=0.6", "symmetric=-0.1", "symmetric=0.1,symmetric=0.2"} {
		if _, err := ParseNATMix(bad); !errors.Is(err, ErrBadScenario) {
			t.Errorf("ParseNATMix(%q): %v", bad, err)
		}
	}
	counts := map[netsim.NATType]int{}
	for _, typ := range m.assign(300, rand.New(rand.NewPCG(1, 2))) {
		counts[typ]++
	}
	if counts[netsim.NATPortRestricted] != 210 || counts[netsim.NATSymmetric] != 30 || counts[netsim.NATNone] != 60 {
		t.Errorf("300 nodes assigned %v", counts)
	}
}

// TestSimNAT50 runs 50 nodes and a 1 MiB file in virtual time, 70 % behind port-restricted
// NATs and 10 % behind symmetric ones, the publisher reachable: every node
// must complete, nodes must have punched holes, and the report must say
// which NAT each node had.
func TestSimNAT50(t *testing.T) {
	if testing.Short() {
		t.Skip("50 complete nodes; skipped in -short")
	}
	skipVirtualUnderRace(t)
	mix, err := ParseNATMix("none=0.2,port-restricted=0.7,symmetric=0.1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep := runVirtual(t, Scenario{
		Nodes: 50, Size: 1 << 20, Up: 512 << 10, PublisherUp: 512 << 10, Seed: 1,
		NAT: mix, Timeout: 10 * time.Minute, Logger: testLogger(t),
	})
	t.Logf("wall %v\n%s", time.Since(start), rep.Summary())
	if rep.NAT == nil || rep.NAT.Nodes["port-restricted"] != 35 || rep.NAT.Nodes["symmetric"] != 5 || rep.NAT.Nodes["none"] != 10 {
		t.Fatalf("NAT report %+v", rep.NAT)
	}
	// Nodes behind port-restricted NATs can reach one another only through
	// a punch: some must have happened.
	if rep.NAT.Punched == 0 {
		t.Error("no hole punch succeeded")
	}
	if rep.Completed != rep.Nodes || rep.BadInstalls != 0 || rep.AddrViolations != 0 {
		t.Errorf("completed %d of %d, bad installs %d, address violations %d", rep.Completed, rep.Nodes, rep.BadInstalls, rep.AddrViolations)
	}
}
