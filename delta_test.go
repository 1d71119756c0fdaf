package engine

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// TestDeltaDownloadsOnlyChangedChunk: the node's installed file is the
// new release but for one chunk; the node copies the others from it
// (Reused), downloads only that one chunk (the publisher serves it alone),
// and installs the new release whole.
func TestDeltaDownloadsOnlyChangedChunk(t *testing.T) {
	const cs = release.MinChunkSize
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	artifact, newData := testArtifact(t, 12*cs+777)
	old := bytes.Clone(newData)
	old[5*cs+3] ^= 0xff // chunk 5 changed in the new release
	cfg := testConfig(t, pub, boot, "1.0.0")
	if err := os.WriteFile(cfg.Target, old, 0o755); err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, cfg)
	log := collect(e)
	p := testPublish(t, key, boot, artifact, "1.1.0", func(pc *PublishConfig) { pc.ChunkSize = cs })
	plog := collect(p.Engine)

	ev := log.wait(t, 60*time.Second, "Reused", func(ev Event) bool { _, ok := ev.(Reused); return ok }).(Reused)
	if ev.Chunks != 12 || ev.Bytes != int64(len(newData)-cs) || ev.Total != 13 || ev.Verified != 12 {
		t.Fatalf("reused %+v; want 12 of 13 chunks, %d bytes", ev, len(newData)-cs)
	}
	log.wait(t, 60*time.Second, "Installed", isInstalled)
	got, err := os.ReadFile(cfg.Target)
	if err != nil || !bytes.Equal(got, newData) {
		t.Fatalf("target is not the new release (%v)", err)
	}
	st := e.Status()
	if st.Fetched != cs || st.Reused != int64(len(newData)-cs) {
		t.Fatalf("status fetched %d, reused %d; want %d, %d", st.Fetched, st.Reused, cs, len(newData)-cs)
	}
	served := plog.count(func(ev Event) bool { s, ok := ev.(Served); return ok && s.Index != 5 })
	if served != 0 {
		t.Fatalf("the publisher served %d chunks other than the changed one", served)
	}
}
