package engine

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// TestStopLeavesNoGoroutine runs an update between a publisher and a node,
// stops both, and checks every goroutine they started has ended.
func TestStopLeavesNoGoroutine(t *testing.T) {
	boot := testNet(t)
	base := runtime.NumGoroutine()
	key := testKey(t)
	artifact, _ := testArtifact(t, 500000)
	p := testPublish(t, key, boot, artifact, "1.1.0", nil)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	e, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	collect(e).wait(t, 60*time.Second, "Installed", isInstalled)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	extra := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		extra = n - base
		if extra <= 0 || time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	if extra > 0 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		var leaked []string
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "rpe-project/engine") || strings.Contains(g, "protoactor") || strings.Contains(g, "quic-go") {
				leaked = append(leaked, g)
			}
		}
		t.Fatalf("%d goroutines left after Stop:\n%s", extra, strings.Join(leaked, "\n\n"))
	}
}
