package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// TestApplyManual: under ApplyManual a verified release is announced by
// UpdateReady and the target stays as it is until the program calls Apply;
// then it is swapped and the program restarted into it. Apply with nothing
// waiting says so.
func TestApplyManual(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, want := testArtifact(t, 100000)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	cfg.Apply = ApplyManual
	execs := make(chan string, 4)
	cfg.Exec = func(path string, argv, env []string) error {
		execs <- path
		return nil
	}
	e := startEngineWith(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Apply(ctx); !errors.Is(err, ErrNothingToApply) {
		t.Fatalf("Apply with nothing ready: %v, want ErrNothingToApply", err)
	}
	log := collect(e)
	testPublish(t, key, boot, artifact, "1.1.0", nil)
	ev := log.wait(t, 30*time.Second, "UpdateReady", func(ev Event) bool { _, ok := ev.(UpdateReady); return ok })
	if v := ev.(UpdateReady).Version; v != "1.1.0" {
		t.Fatalf("UpdateReady for %s, want 1.1.0", v)
	}
	if b, _ := os.ReadFile(cfg.Target); bytes.Equal(b, want) {
		t.Fatal("target swapped before Apply")
	}
	select {
	case p := <-execs:
		t.Fatalf("exec of %s before Apply", p)
	default:
	}
	if err := e.Apply(ctx); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	log.wait(t, 30*time.Second, "Installed", isInstalled)
	if got, _ := os.ReadFile(cfg.Target); !bytes.Equal(got, want) {
		t.Fatal("target differs from the published artifact after Apply")
	}
	select {
	case p := <-execs:
		if p != cfg.Target {
			t.Fatalf("exec of %s, want %s", p, cfg.Target)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no restart after Apply")
	}
	log.wait(t, 30*time.Second, "Confirmed", func(ev Event) bool { c, ok := ev.(Confirmed); return ok && c.Version == "1.1.0" })
}
