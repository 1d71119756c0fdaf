package engine

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/release"
)

// TestApplyAtAcrossMidnight: with policy at=00:00 and a clock a moment
// before midnight, the release is verified at once, scheduled for the next
// day's 00:00 (not today's, which has passed), and swapped when it comes.
func TestApplyAtAcrossMidnight(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, want := testArtifact(t, 300000)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	cfg.Apply = ApplyAt(0, 0)
	loc := time.FixedZone("test", 2*3600)
	// The injected clock starts a few seconds before local midnight and
	// runs at real speed, so the wait is short but the date rolls over.
	real0 := time.Now()
	y, m, d := real0.In(loc).Date()
	midnight := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	start := midnight.Add(-3 * time.Second)
	now := func() time.Time { return start.Add(time.Since(real0)) }
	execs := make(chan string, 4)
	cfg.Exec = func(path string, argv, env []string) error {
		execs <- path
		return nil
	}
	testPublish(t, key, boot, artifact, "1.1.0", nil)
	e := startEngineWith(t, cfg, func(h *hooks.Hooks) { h.Now = now })
	log := collect(e)
	ev := log.wait(t, 30*time.Second, "Scheduled", func(ev Event) bool { _, ok := ev.(Scheduled); return ok })
	at := ev.(Scheduled).At
	if !at.Equal(midnight) {
		t.Fatalf("scheduled at %v, want %v", at, midnight)
	}
	if b, _ := os.ReadFile(cfg.Target); bytes.Equal(b, want) {
		t.Fatal("target swapped before its time")
	}
	log.wait(t, 30*time.Second, "Installed", isInstalled)
	if now := now(); now.Before(at) {
		t.Fatalf("installed at %v, before %v", now, at)
	}
	got, _ := os.ReadFile(cfg.Target)
	if !bytes.Equal(got, want) {
		t.Fatal("target differs from the published artifact")
	}
	select {
	case p := <-execs:
		if p != cfg.Target {
			t.Fatalf("exec of %s, want %s", p, cfg.Target)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exec after the install")
	}
}
