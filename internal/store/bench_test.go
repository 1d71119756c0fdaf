package store

import (
	"io"
	"testing"

	"github.com/rpe-project/engine/release"
)

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// BenchmarkMarkVerified marks chunks of a release of 8192 chunks (128 MiB
// in 16 KiB chunks, a 1 KiB have file) verified, one call per op, as a
// download does; ns/release is the cost of marking the whole release.
func BenchmarkMarkVerified(b *testing.B) {
	const n = 8192
	sk := testKey(1)
	sm := signedFrom(b, sk, io.LimitReader(zeros{}, n*chunk), "1.0.0")
	s := open(b, b.TempDir(), release.PublicKeyOf(sk))
	r, err := s.Add(sm) // the data file is sparse: nothing is written
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if err := r.MarkVerified(i % n); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i)*n, "ns/release")
}
