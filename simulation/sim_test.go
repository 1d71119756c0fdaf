package simulation

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

func testLogger(t testing.TB) *slog.Logger {
	if v := os.Getenv("RPE_SIM_LOG"); v != "" {
		var level slog.Level
		if level.UnmarshalText([]byte(v)) != nil {
			level = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return nil
}

// TestSim20 runs 20 complete nodes, a publisher and two hostile peers, with
// churn, and checks that every node ends up with exactly the published
// bytes and that no packet left 127.0.0.0/8.
func TestSim20(t *testing.T) {
	if testing.Short() {
		t.Skip("20 complete nodes; skipped in -short")
	}
	s := Scenario{
		Nodes: 20, Size: 1 << 20, ChunkSize: 64 << 10,
		Up: 2 << 20, PublisherUp: 1 << 20, Latency: 5 * time.Millisecond,
		Churn: 0.1, Hostile: 0.2, Seed: 1, Timeout: 45 * time.Second,
		Logger: testLogger(t), Dir: t.TempDir(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	rep, err := Run(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Summary())
	if rep.Completed != s.Nodes {
		t.Errorf("completed %d of %d", rep.Completed, s.Nodes)
	}
	if rep.BadInstalls != 0 {
		t.Errorf("%d bad installs", rep.BadInstalls)
	}
	if rep.AddrViolations != 0 {
		t.Errorf("%d packets from or to outside 127.0.0.0/8", rep.AddrViolations)
	}
	if rep.Hostile != 4 {
		t.Errorf("hostile %d, want 4", rep.Hostile)
	}
	if rep.TMinS == nil || rep.TAllS == nil || *rep.TAllS < *rep.TMinS {
		t.Errorf("t_all %v below the bound %v", rep.TAllS, rep.TMinS)
	}
}
