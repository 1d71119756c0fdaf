package simulation

import (
	"testing"
	"time"
)

// TestPrivateSwarmOutsider is the acceptance test of private swarms, in
// virtual time: 20 nodes and the publisher share a secret; an outsider
// engine and an outsider client know the publisher key and not the secret.
// Every insider updates; the outsiders learn no version, find no peer and
// receive no chunk (nor any manifest or message), and every connection the
// client makes to an insider is dropped.
func TestPrivateSwarmOutsider(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20-node simulation")
	}
	start := time.Now()
	rep := runVirtual(t, Scenario{
		Nodes: 20, Size: 1 << 20, Up: 1 << 20, PublisherUp: 1 << 20, Seed: 7, Private: true,
		Timeout: 5 * time.Minute, Logger: testLogger(t),
	})
	t.Logf("wall %v\n%s", time.Since(start), rep.Summary())
	if rep.Completed != rep.Nodes || rep.BadInstalls != 0 || rep.AddrViolations != 0 {
		t.Errorf("insiders: completed %d of %d, bad installs %d, address violations %d", rep.Completed, rep.Nodes, rep.BadInstalls, rep.AddrViolations)
	}
	o := rep.Outsider
	if o == nil {
		t.Fatal("no outsider report")
	}
	t.Logf("outsider: %+v", *o)
	if o.Versions != 0 || o.EnginePeers != 0 || o.EngineBytes != 0 {
		t.Errorf("outsider engine found %d versions, %d peers, %d chunk bytes; want none", o.Versions, o.EnginePeers, o.EngineBytes)
	}
	if o.RecordRefusals == 0 {
		t.Error("outsider engine never saw (and refused) the private record: the test proves nothing")
	}
	if o.ClientPeersFound != 0 || o.ClientAnswers != 0 || o.ClientNotified != 0 {
		t.Errorf("outsider client found %d peers, got %d answers and %d messages; want none", o.ClientPeersFound, o.ClientAnswers, o.ClientNotified)
	}
	if o.ClientDials != 2*rep.Nodes || o.ClientDropped != o.ClientDials {
		t.Errorf("outsider client: %d dials of %d, %d dropped; want every insider dialled twice and every connection dropped", o.ClientDials, 2*rep.Nodes, o.ClientDropped)
	}
}
