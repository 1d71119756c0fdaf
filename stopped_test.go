package engine

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/release"
)

// TestStageStoppedForGood: a stage that fails at every start is restarted
// with backoff until its limit, then stopped for good: the engine says so
// with a Failed event wrapping ErrStageStopped, Status lists the stage, and
// the rest of the node goes on (Stop still works).
func TestStageStoppedForGood(t *testing.T) {
	boot := testNet(t)
	cfg := testConfig(t, release.PublicKeyOf(testKey(t)), boot, "1.0.0")
	e := startEngineWith(t, cfg, func(h *hooks.Hooks) {
		h.Fault = func(stage string, msg any) {
			if _, ok := msg.(*actor.Started); ok && stage == "installer" {
				panic(fmt.Sprintf("injected: %s cannot start", stage))
			}
		}
	})
	log := collect(e)
	ev := log.wait(t, 60*time.Second, "Failed for the installer", func(ev Event) bool {
		f, ok := ev.(Failed)
		return ok && f.Stage == StageInstaller && errors.Is(f.Err, ErrStageStopped)
	})
	t.Log(ev.(Failed).Err)
	st := e.Status()
	if !slices.Equal(st.Stopped, []Stage{StageInstaller}) || st.Restarts != maxRestarts {
		t.Fatalf("Status: stopped %v after %d restarts, want [installer] after %d", st.Stopped, st.Restarts, maxRestarts)
	}
}
