package release

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// sha256Stream is the yardstick: one plain SHA-256 pass over the same reader,
// read in the same block size.
func sha256Stream(r io.Reader) ([32]byte, error) {
	h := sha256.New()
	buf := make([]byte, streamBlock)
	for {
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return [32]byte{}, err
		}
	}
	var s [32]byte
	h.Sum(s[:0])
	return s, nil
}

// BenchmarkBuildManifest compares BuildManifest (chunk hashes and the
// whole-file hash) with one plain crypto/sha256 pass over the same bytes,
// read the same way:
//
//   - file: a file on disk (in the page cache after it is written), as
//     `rpe sign` and `rpe publish` read artifacts;
//   - stream: a reader that is no file, as a pipe would be.
//
// Each iteration runs both, one after the other, so load from other
// processes hits both alike. It reports both rates, their ratio, and the
// heap in use at the end of a build (which does not grow with the size).
func BenchmarkBuildManifest(b *testing.B) {
	for _, tc := range []struct {
		name   string
		size   int64
		source string
	}{{"64MiB", 64 << 20, "file"}, {"1GiB", 1 << 30, "file"}, {"1GiB", 1 << 30, "stream"}} {
		b.Run(tc.name+"/"+tc.source, func(b *testing.B) {
			open := func() io.Reader { return newPatternReader(tc.size, 1) }
			if tc.source == "file" {
				path := filepath.Join(b.TempDir(), "artifact")
				writePatternFile(b, path, tc.size)
				open = func() io.Reader {
					f, err := os.Open(path)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { f.Close() })
					return f
				}
			}
			benchBuild(b, tc.size, open)
		})
	}
}

func writePatternFile(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, newPatternReader(size, 1)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

func benchBuild(b *testing.B, size int64, open func() io.Reader) {
	opts := BuildOptions{App: "bench", Version: "1.0.0", Created: testTime, MaxSize: 2 << 30}
	var build, plain time.Duration
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		t0 := time.Now()
		want, err := sha256Stream(open())
		if err != nil {
			b.Fatal(err)
		}
		plain += time.Since(t0)
		r := open()
		b.StartTimer()

		t1 := time.Now()
		m, err := BuildManifest(r, opts)
		build += time.Since(t1)
		if err != nil {
			b.Fatal(err)
		}
		if m.FileHash != want || m.Size != size {
			b.Fatal("hash differs from plain SHA-256")
		}
	}
	mbps := func(d time.Duration) float64 {
		return float64(size) * float64(b.N) / d.Seconds() / 1e6
	}
	b.ReportMetric(mbps(build), "build-MB/s")
	b.ReportMetric(mbps(plain), "sha256-MB/s")
	b.ReportMetric(plain.Seconds()/build.Seconds(), "build/sha256")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(parallelSpeedup(), "2core-speedup")
}

// parallelSpeedup measures how much faster two goroutines hash than one on
// this machine right now (2 on two idle cores, 1 when only one core is
// free). BuildManifest can reach the speed of one plain SHA-256 pass only
// when it is near 2, so the benchmark reports it beside the ratio.
func parallelSpeedup() float64 {
	buf := make([]byte, 1<<20)
	work := func() {
		for range 64 {
			sha256.Sum256(buf)
		}
	}
	t0 := time.Now()
	work()
	work()
	seq := time.Since(t0)
	t1 := time.Now()
	done := make(chan struct{})
	go func() { work(); close(done) }()
	work()
	<-done
	return seq.Seconds() / time.Since(t1).Seconds()
}

// BenchmarkVerifyFile measures streaming verification of 256 MiB.
func BenchmarkVerifyFile(b *testing.B) {
	const size = 256 << 20
	m, err := BuildManifest(newPatternReader(size, 1), BuildOptions{App: "bench", Version: "1.0.0", Created: testTime})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		if err := VerifyFile(newPatternReader(size, 1), m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify compares streaming verification (VerifyFile: every chunk
// hash and the length, as the installer checks a staged file and the store
// checks a published one) with one plain crypto/sha256 pass over the same
// 256 MiB, read the same way, alternating the two in each iteration so that
// load from other processes hits both alike:
//
//   - file: a file in the page cache, as rpe verifies;
//   - stream: a reader that is no file.
//
// ratio is sha256 time / verify time (goal >= 0.95). VerifyFile hashes
// every byte once, as the plain pass does, so the ratio does not depend on
// a second free core.
func BenchmarkVerify(b *testing.B) {
	const size = 256 << 20
	m, err := BuildManifest(newPatternReader(size, 1), BuildOptions{App: "bench", Version: "1.0.0", Created: testTime})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "artifact")
	writePatternFile(b, path, size)
	for _, source := range []string{"file", "stream"} {
		b.Run(source, func(b *testing.B) {
			open := func() io.Reader { return newPatternReader(size, 1) }
			if source == "file" {
				open = func() io.Reader {
					f, err := os.Open(path)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { f.Close() })
					return f
				}
			}
			var verify, plain time.Duration
			b.SetBytes(size)
			for b.Loop() {
				t0 := time.Now()
				if _, err := sha256Stream(open()); err != nil {
					b.Fatal(err)
				}
				plain += time.Since(t0)
				t1 := time.Now()
				if err := VerifyFile(open(), m); err != nil {
					b.Fatal(err)
				}
				verify += time.Since(t1)
			}
			mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
			b.ReportMetric(mbps(verify), "verify-MB/s")
			b.ReportMetric(mbps(plain), "sha256-MB/s")
			b.ReportMetric(plain.Seconds()/verify.Seconds(), "ratio")
			b.ReportAllocs()
		})
	}
}
