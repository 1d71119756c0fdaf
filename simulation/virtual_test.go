package simulation

import (
	"context"
	"os"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/simulation/netsim"
)

// runVirtual runs a scenario inside a testing/synctest bubble: every timer
// of the DHT, QUIC, protoactor and netsim runs on the bubble's virtual
// clock, which advances only when every goroutine of the bubble is blocked,
// so CPU time does not count and the figures measure the protocol alone.
func runVirtual(t *testing.T, s Scenario) *Report {
	t.Helper()
	var rep *Report
	synctest.Test(t, func(t *testing.T) {
		s.Virtual = true
		s.Dir = t.TempDir()

		r, err := Run(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		rep = &r
		// protoactor's dead-letter throttle runs a goroutine that waits one
		// throttle interval (1s) on a ticker and cannot be stopped; the
		// bubble's clock stops when this function returns, so let that
		// interval pass here (virtual time: it costs nothing).
		time.Sleep(2 * time.Second)
	})
	return rep
}

// TestSimVirtual runs RPE_SIM_VIRTUAL nodes (the acceptance scenario: 4 MiB,
// 1 MiB/s up, publisher 1 MiB/s; RPE_SIM_UP changes both rates,
// RPE_SIM_SIZE the size) in virtual time; it is skipped unless that
// variable is set.
func TestSimVirtual(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RPE_SIM_VIRTUAL"))
	if n <= 0 {
		t.Skip("set RPE_SIM_VIRTUAL=N to run N nodes in virtual time")
	}
	// RPE_SIM_UP sets every node's and the publisher's upload rate
	// (default 1MiB, per second); bench/run.sh uses 512KiB.
	up := int64(1 << 20)
	if v := os.Getenv("RPE_SIM_UP"); v != "" {
		var err error
		if up, err = units.ParseSize(v); err != nil || up <= 0 {
			t.Fatalf("RPE_SIM_UP=%q: %v", v, err)
		}
	}
	// RPE_SIM_SIZE sets the release size (default 4MiB); the 1000-node
	// scenario of docs/BENCHMARKS.md uses 1MiB.
	size := int64(4 << 20)
	if v := os.Getenv("RPE_SIM_SIZE"); v != "" {
		var err error
		if size, err = units.ParseSize(v); err != nil || size <= 0 {
			t.Fatalf("RPE_SIM_SIZE=%q: %v", v, err)
		}
	}
	// RPE_SIM_IDLE keeps the nodes idle that long (virtual) before the
	// publish, to measure what an idle node costs.
	var idle time.Duration
	if v := os.Getenv("RPE_SIM_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil || idle < 0 {
			t.Fatalf("RPE_SIM_IDLE=%q: %v", v, err)
		}
	}
	// RPE_SIM_NAT and RPE_SIM_PUBLISHER_NAT are rpe sim's --nat and
	// --publisher-nat.
	mix, err := ParseNATMix(os.Getenv("RPE_SIM_NAT"))
	if err != nil {
		t.Fatalf("RPE_SIM_NAT: %v", err)
	}
	pubNAT := netsim.NATNone
	if v := os.Getenv("RPE_SIM_PUBLISHER_NAT"); v != "" {
		if pubNAT, err = netsim.ParseNATType(v); err != nil {
			t.Fatalf("RPE_SIM_PUBLISHER_NAT: %v", err)
		}
	}
	// RPE_SIM_HOSTILE is rpe sim's --hostile: hostile peers as a fraction
	// of the nodes, every kind in turn.
	var hostile float64
	if v := os.Getenv("RPE_SIM_HOSTILE"); v != "" {
		if hostile, err = strconv.ParseFloat(v, 64); err != nil {
			t.Fatalf("RPE_SIM_HOSTILE: %v", err)
		}
	}
	start := time.Now()
	rep := runVirtual(t, Scenario{
		Nodes: n, Size: size, Up: up, PublisherUp: up, Seed: 1, Idle: idle,
		NAT: mix, PublisherNAT: pubNAT, Hostile: hostile,
		Timeout: 10 * time.Minute, Logger: testLogger(t),
	})
	t.Logf("wall %v\n%s", time.Since(start), rep.Summary())
	if out := os.Getenv("RPE_SIM_JSON"); out != "" {
		if err := rep.WriteJSONFile(out); err != nil {
			t.Fatal(err)
		}
	}
	if out := os.Getenv("RPE_SIM_PLOT"); out != "" {
		if err := WritePlotFile(out, rep); err != nil {
			t.Fatal(err)
		}
	}
	if rep.Completed != rep.Nodes || rep.BadInstalls != 0 || rep.AddrViolations != 0 {
		t.Errorf("completed %d of %d, bad installs %d, address violations %d", rep.Completed, rep.Nodes, rep.BadInstalls, rep.AddrViolations)
	}
}
