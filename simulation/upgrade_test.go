package simulation

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// envDur reads a duration from the environment, or def.
func envDur(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

func envFloat(t *testing.T, name string, def float64) float64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return f
}

func envCount(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a count", name, v)
	}
	return n
}

// upgradeScenario is the upgrade scenario of the discovery issue: n idle
// nodes run 1.0.0, whose record the DHT holds; 1.1.0 (256 KiB, every node
// and the publisher at 1 MiB/s) is published once they settled, and
// t_aware and t_all count from that publish. Polling is the engine's
// default 5 minutes unless poll says otherwise; noPoll turns it off.
func upgradeScenario(t *testing.T, n int, poll time.Duration, noPoll bool) Scenario {
	return Scenario{
		Nodes: n, Size: 256 << 10, Up: 1 << 20, PublisherUp: 1 << 20, Seed: 1,
		Upgrade: true, PollInterval: poll, NoPoll: noPoll, Idle: time.Minute,
		Timeout: 5 * time.Minute, Logger: testLogger(t),
	}
}

// TestSimUpgrade runs the upgrade scenario with RPE_SIM_UPGRADE nodes in
// virtual time; skipped unless that variable is set. RPE_SIM_POLL sets the
// poll interval (default 5m), RPE_SIM_NO_POLL=1 turns polling off. The
// options of a network like the real DHT come from RPE_SIM_LATENCY_MAX,
// RPE_SIM_LOSS, RPE_SIM_DHT_NODES, RPE_SIM_DHT_JUNK, RPE_SIM_DHT_CHURN,
// RPE_SIM_IDLE and RPE_SIM_DHT_PROBES (rpe sim's --latency-max, --loss,
// --dht-nodes, --dht-junk, --dht-churn, --idle, --dht-probes). The
// documented runs (docs/SIMULATION.md):
//
//	RPE_SIM_UPGRADE=500 go test ./simulation -run TestSimUpgrade -v -timeout 60m
//	RPE_SIM_UPGRADE=500 RPE_SIM_NO_POLL=1 go test ./simulation -run TestSimUpgrade -v -timeout 60m
func TestSimUpgrade(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RPE_SIM_UPGRADE"))
	if n <= 0 {
		t.Skip("set RPE_SIM_UPGRADE=N to run the upgrade scenario with N nodes in virtual time")
	}
	s := upgradeScenario(t, n, envDur(t, "RPE_SIM_POLL", 0), os.Getenv("RPE_SIM_NO_POLL") == "1")
	s.LatencyMax = envDur(t, "RPE_SIM_LATENCY_MAX", 0)
	s.Loss = envFloat(t, "RPE_SIM_LOSS", 0)
	s.DHTNodes = envCount(t, "RPE_SIM_DHT_NODES", 0)
	s.DHTJunk = envFloat(t, "RPE_SIM_DHT_JUNK", 0)
	s.DHTChurn = envFloat(t, "RPE_SIM_DHT_CHURN", 0)
	s.Idle = envDur(t, "RPE_SIM_IDLE", 0)
	s.DHTProbes = envCount(t, "RPE_SIM_DHT_PROBES", 0)
	if s.LatencyMax > 0 {
		s.Latency = 10 * time.Millisecond
	}
	start := time.Now()
	rep := runVirtual(t, s)
	t.Logf("wall %v\n%s", time.Since(start), rep.Summary())
	if out := os.Getenv("RPE_SIM_JSON"); out != "" {
		if err := rep.WriteJSONFile(out); err != nil {
			t.Fatal(err)
		}
	}
	if rep.Aware != rep.Nodes || rep.Completed != rep.Nodes || rep.BadInstalls != 0 || rep.AddrViolations != 0 {
		t.Errorf("aware %d, completed %d of %d, bad installs %d, address violations %d",
			rep.Aware, rep.Completed, rep.Nodes, rep.BadInstalls, rep.AddrViolations)
	}
}

// TestSimUpgradeNoPoll is the upgrade scenario at 20 nodes with polling
// off and a DHT like the real one (latency 20-300 ms a path, 1 % loss, 60
// plain DHT nodes of which 10 % answer junk and 20 % are replaced every
// minute), idle for two minutes before the publish, and 6 probes: every
// node must learn of the release through the mesh alone and install it,
// and the report must carry the DHT figures.
func TestSimUpgradeNoPoll(t *testing.T) {
	if testing.Short() {
		t.Skip("20 nodes")
	}
	if raceEnabled {
		t.Skip("synctest under -race aborts in the race runtime (golang/go#78156)")
	}
	s := upgradeScenario(t, 20, 0, true)
	s.Latency, s.LatencyMax, s.Loss = 10*time.Millisecond, 150*time.Millisecond, 0.01
	s.DHTNodes, s.DHTJunk, s.DHTChurn = 60, 0.1, 0.2
	s.Idle, s.DHTProbes = 2*time.Minute, 6
	rep := runVirtual(t, s)
	t.Logf("\n%s", rep.Summary())
	if rep.Aware != rep.Nodes || rep.Completed != rep.Nodes || rep.BadInstalls != 0 || rep.AddrViolations != 0 {
		t.Errorf("aware %d, completed %d of %d, bad installs %d, address violations %d",
			rep.Aware, rep.Completed, rep.Nodes, rep.BadInstalls, rep.AddrViolations)
	}
	d := rep.DHT
	switch {
	case d == nil:
		t.Fatal("no DHT report")
	case d.Junk != 6 || d.Nodes != 54:
		t.Errorf("DHT nodes %d, junk %d; want 54 and 6", d.Nodes, d.Junk)
	case d.Left == 0 || d.Joined == 0:
		t.Errorf("no DHT churn: %d left, %d joined", d.Left, d.Joined)
	case d.Puts != 6 || d.PutsOK != 6 || d.LookupsOK != 6:
		t.Errorf("probes: puts %d/%d, lookups %d/%d", d.PutsOK, d.Puts, d.LookupsOK, d.Lookups)
	case d.IdleQueriesPerMin == nil || *d.IdleQueriesPerMin <= 0:
		t.Errorf("idle queries per node-minute not measured: %v", d.IdleQueriesPerMin)
	}
}
