package swarm

import (
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// TestSeedTurnRoundRobin: a seed serves every chunk in demand once before
// any chunk a second time (beyond the slack), and counts only chunks still
// in demand, so a chunk everyone wants is never held back.
func TestSeedTurnRoundRobin(t *testing.T) {
	var c counters
	id := release.ManifestID{1}
	now := time.Unix(1000, 0)
	const n = 4
	// Every chunk is asked for: each is served up to 1+slack times before
	// the least served catches up.
	for i := range n {
		if !c.seedTurn(id, i, n, now) {
			t.Fatalf("first request for chunk %d refused", i)
		}
	}
	for round := 0; round <= seedSlack; round++ {
		if !c.seedTurn(id, 0, n, now) {
			t.Fatalf("chunk 0 refused within the slack (round %d)", round)
		}
	}
	if c.seedTurn(id, 0, n, now) {
		t.Fatal("chunk 0 served again while chunks 1-3 were served less and are in demand")
	}
	// Later only chunk 0 is wanted: the others drop out of demand and chunk
	// 0 is served again.
	later := now.Add(demandWindow + time.Second)
	if !c.seedTurn(id, 0, n, later) {
		t.Fatal("chunk 0 refused although no other chunk is in demand")
	}
	// seedUndo gives a turn back.
	c.seedUndo(id, 0)
	c.seedUndo(id, 0)
	if !c.seedTurn(id, 0, n, later) {
		t.Fatal("chunk 0 refused after its turns were given back")
	}
}
