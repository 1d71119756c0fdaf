package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/hooks"
)

// BenchmarkFetchInProcess is BenchmarkOnePeer with the fetch in this
// process (engine.Fetch), so that `go test -cpuprofile/-memprofile` sees
// both ends and the allocations can be counted. Besides the throughput it
// reports, per chunk fetched, the heap allocations (objects and bytes) of
// the whole process: the publisher serving the chunk and the fetcher
// receiving, writing and verifying it. RPE_BENCH_SIZE sets the release
// size (default 128 MiB here too).
func BenchmarkFetchInProcess(b *testing.B) {
	size := onePeerSize(b)
	dir := b.TempDir()
	artifact := filepath.Join(dir, "artifact")
	writeRandom(b, artifact, size)

	ctx := hooks.With(context.Background(), &hooks.Hooks{QueryResendDelay: 200 * time.Millisecond})
	bootAddr, pubkey, chunks := startSeed(b, dir, artifact)

	var ms0, ms1 runtime.MemStats
	var fetchTime time.Duration
	b.SetBytes(size)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		out := filepath.Join(dir, "out")
		os.Remove(out)
		runtime.ReadMemStats(&ms0)
		start := time.Now()
		_, err := engine.Fetch(ctx, engine.FetchConfig{
			PublisherKey: pubkey, App: "big", Out: out,
			Bootstrap: []string{bootAddr}, ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0",
		})
		fetchTime += time.Since(start)
		runtime.ReadMemStats(&ms1)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(chunks), "allocs/chunk")
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(chunks)/1024, "alloc-KiB/chunk")
	}
	b.ReportMetric(float64(size)*float64(i)/(1<<20)/fetchTime.Seconds(), "fetch-MiB/s")
}
