package engine

import (
	"context"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// TestMeshSpreadsReleaseWithoutPolling: idle nodes that never poll the DHT
// (NoPoll) and download nothing still learn of a new release, through the
// app's awareness mesh alone: they found each other under the app's topic,
// the publisher of 1.1.0 joins the mesh and greets its peers with the new
// record, and they pass it on.
func TestMeshSpreadsReleaseWithoutPolling(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	old, _ := testArtifact(t, 20_000)
	first := testPublish(t, key, boot, old, "1.0.0", nil)

	const nodes = 6
	var logs []*eventLog
	for range nodes {
		cfg := testConfig(t, pub, boot, "1.0.0")
		cfg.NoPoll = true
		logs = append(logs, collect(startEngine(t, cfg)))
	}
	// The 1.0.0 publisher leaves; the next one publishes 1.1.0.
	first.Stop(context.Background())
	artifact, _ := testArtifact(t, 20_000)
	testPublish(t, key, boot, artifact, "1.1.0", nil)
	for i, l := range logs {
		l.wait(t, 30*time.Second, "node learns 1.1.0 through the mesh", func(ev Event) bool {
			rf, ok := ev.(ReleaseFound)
			return ok && rf.Version == "1.1.0"
		})
		t.Logf("node %d learnt 1.1.0", i)
	}
}
