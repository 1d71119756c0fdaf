package wire

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/release"
)

const (
	benchTotal    = 256 << 20 // bytes each way moves per iteration
	benchPieces   = 8         // interleaved pieces per iteration
	benchPiece    = benchTotal / benchPieces
	benchChunk    = 1 << 20
	benchInflight = 8
)

// BenchmarkTransfer moves 256 MiB over loopback QUIC two ways per iteration:
// through wire (GetChunk of 1 MiB chunks, 8 in flight, the handler copying
// each chunk into its buffer as a disk read would) and through a bare
// quic-go stream with the same QUIC configuration. It reports both
// throughputs and their ratio (goal >= 0.9). The 256 MiB go in 8
// interleaved pieces of 32 MiB, alternating which way goes first, so that
// load from other processes on a shared machine hits both ways alike. It
// also reports the process CPU time (both ends, user and system) each way
// spent per MiB, which other load disturbs less than wall-clock throughput.
func BenchmarkTransfer(b *testing.B) {
	ctx := context.Background()
	src := pattern(benchChunk, 9)
	id := mid(7)

	// wire pair
	lim := Limits{}
	na, nb := newNode(b, lim), newNode(b, lim)
	h := newTestHandler()
	h.chunkFunc = func(_ release.ManifestID, _ uint32, buf []byte) ([]byte, error) {
		buf = slices.Grow(buf[:0], len(src))[:len(src)]
		copy(buf, src)
		return buf, nil
	}
	wc, ws := connect(b, na, nb, lim, newTestHandler(), h)
	sayHello(b, wc, ws)

	// bare quic-go pair, same configuration
	lim, _ = lim.withDefaults()
	qa, qb := newTransport(b), newTransport(b)
	st, _ := ServerTLS(newKey(b))
	ln, err := qb.Listen(st, lim.quicConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ct, _ := ClientTLS(newKey(b), NodeID{})
	qc, err := qa.Dial(ctx, ln.Addr(), ct, lim.quicConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	sc, err := ln.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer sc.CloseWithError(0, "")

	var wireTime, quicTime, wireCPU, quicCPU time.Duration
	wireWay := func() {
		c0 := cpuTime()
		wireTime += transferWire(b, wc.Conn, id)
		wireCPU += cpuTime() - c0
	}
	quicWay := func() {
		c0 := cpuTime()
		quicTime += transferQUIC(b, qc, sc, src)
		quicCPU += cpuTime() - c0
	}
	b.SetBytes(2 * benchTotal)
	for b.Loop() {
		for i := range benchPieces {
			if i%2 == 0 {
				wireWay()
				quicWay()
			} else {
				quicWay()
				wireWay()
			}
		}
	}
	mib := float64(benchTotal) * float64(b.N) / (1 << 20)
	w, q := mib/wireTime.Seconds(), mib/quicTime.Seconds()
	b.ReportMetric(w, "wire-MiB/s")
	b.ReportMetric(q, "quic-MiB/s")
	b.ReportMetric(w/q, "ratio")
	b.ReportMetric(float64(wireCPU.Microseconds())/mib, "wire-cpu-µs/MiB")
	b.ReportMetric(float64(quicCPU.Microseconds())/mib, "quic-cpu-µs/MiB")
	// The same comparison by CPU time, which load from other processes
	// disturbs far less than wall-clock throughput.
	b.ReportMetric(quicCPU.Seconds()/wireCPU.Seconds(), "cpu-ratio")
}

func transferWire(b *testing.B, c *Conn, id release.ManifestID) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchInflight {
		wg.Go(func() {
			dst := make([]byte, benchChunk)
			for {
				i := next.Add(1) - 1
				if i >= benchPiece/benchChunk {
					return
				}
				if err := c.GetChunk(context.Background(), id, uint32(i), dst); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

func transferQUIC(b *testing.B, client, server *quic.Conn, src []byte) time.Duration {
	start := time.Now()
	s, err := client.OpenStream()
	if err != nil {
		b.Fatal(err)
	}
	s.Write([]byte{1}) // the server learns of the stream with its first byte
	done := make(chan error, 1)
	go func() {
		ss, err := server.AcceptStream(context.Background())
		if err != nil {
			done <- err
			return
		}
		if _, err := io.ReadFull(ss, make([]byte, 1)); err != nil {
			done <- err
			return
		}
		for sent := 0; sent < benchPiece; sent += len(src) {
			if _, err := ss.Write(src); err != nil {
				done <- err
				return
			}
		}
		done <- ss.Close()
	}()
	dst := make([]byte, benchChunk)
	var got int64
	for {
		n, err := s.Read(dst)
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if got != benchPiece {
		b.Fatalf("bare QUIC moved %d bytes, want %d", got, benchPiece)
	}
	return time.Since(start)
}

// BenchmarkGetChunkSmall measures the per-request cost: 4 KiB chunks, 8
// requests in flight.
func BenchmarkGetChunkSmall(b *testing.B) {
	src := pattern(4<<10, 1)
	na, nb := newNode(b, Limits{}), newNode(b, Limits{})
	h := newTestHandler()
	h.chunkFunc = func(_ release.ManifestID, _ uint32, buf []byte) ([]byte, error) {
		return append(buf, src...), nil
	}
	wc, ws := connect(b, na, nb, Limits{}, newTestHandler(), h)
	sayHello(b, wc, ws)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	b.SetParallelism(4) // 8 goroutines on 2 CPUs
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, len(src))
		for pb.Next() {
			if err := wc.GetChunk(context.Background(), mid(1), 0, dst); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
