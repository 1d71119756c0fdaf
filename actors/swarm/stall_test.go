package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/wire"
)

// stallPeer connects to the rig's swarm over raw QUIC with a 1 KiB stream
// receive window, opens k chunk requests for release tr and never reads
// an answer: each answer stalls after its first kilobyte.
func stallPeer(t *testing.T, r *rig, tr testRelease, k int) {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	qt := &quic.Transport{Conn: uc}
	tc, err := wire.ClientTLS(newKey(t), r.id())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	qc, err := qt.Dial(ctx, net.UDPAddrFromAddrPort(r.node.QUICAddr()), tc, &quic.Config{
		InitialStreamReceiveWindow: 1 << 10, MaxStreamReceiveWindow: 1 << 10,
		InitialConnectionReceiveWindow: 1 << 20, MaxConnectionReceiveWindow: 1 << 20,
		KeepAlivePeriod: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		qc.CloseWithError(0, "")
		qt.Close()
		uc.Close()
	})
	n := tr.sm.Manifest.NumChunks()
	for j := range k {
		s, err := qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		frame, err := wire.EncodeMessage(&wire.GetChunk{ID: tr.sm.ID, Index: uint32(j % n)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(frame); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// honestFetch fetches every chunk of tr from the rig as a downloader
// would (a busy answer is asked again after a short back-off) and returns
// how long it took.
func honestFetch(t *testing.T, r *rig, tr testRelease) time.Duration {
	t.Helper()
	return fetchAll(t, r.dial(t), tr)
}

// fetchAll is honestFetch over an existing connection.
func fetchAll(t *testing.T, c *wire.Conn, tr testRelease) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	start := time.Now()
	for i := range tr.sm.Manifest.NumChunks() {
		buf := make([]byte, tr.sm.Manifest.ChunkLen(i))
		for {
			err := c.GetChunk(ctx, tr.sm.ID, uint32(i), buf)
			if err == nil {
				break
			}
			if !errors.Is(err, wire.ErrBusy) {
				t.Fatalf("chunk %d: %v", i, err)
			}
			select { // the downloader's busy back-off, shortened
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("chunk %d: still busy at the deadline", i)
			}
		}
		off := tr.sm.Manifest.ChunkOffset(i)
		if !bytes.Equal(buf, tr.data[off:off+int64(len(buf))]) {
			t.Fatalf("chunk %d: wrong bytes", i)
		}
	}
	return time.Since(start)
}

// TestStalledAnswersDoNotStarve: peers that ask a seed for chunks and
// never read the answers (slow retrieval turned on the seed's upload
// slots) do not keep an honest peer from fetching: its fetch ends within
// its unattacked time plus 5 s, for 2, 8 and 32 stalled answers from one
// peer and from 8 peers. The defences: a peer holds at most its share of
// the slots, an answer taken below wire's MinAnswerRate is abandoned
// within seconds, and its peer then gets no slot for a while.
func TestStalledAnswersDoNotStarve(t *testing.T) {
	tr := newTestRelease(t)
	calm := honestFetch(t, newRig(t, Config{}, tr), tr)
	for _, peers := range []int{1, 8} {
		for _, stalled := range []int{2, 8, 32} {
			t.Run(fmt.Sprintf("%d_from_%d_peers", stalled, peers), func(t *testing.T) {
				t.Parallel() // each its own seed; the bound has seconds of slack
				r := newRig(t, Config{}, tr)
				for range peers {
					stallPeer(t, r, tr, stalled)
				}
				// Wait until the stalls hold slots (an answer is being sent).
				deadline := time.Now().Add(waitFor)
				for r.ctr.up.activeAnswers() == 0 {
					if time.Now().After(deadline) {
						t.Fatal("no stalled answer ever took a slot")
					}
					time.Sleep(time.Millisecond) // polling a counter, not synchronising
				}
				took := honestFetch(t, r, tr)
				t.Logf("honest fetch %v (unattacked %v); answers abandoned as slow: %d", took, calm, r.ctr.slowAnswers.Load())
				if took > max(2*calm, calm+5*time.Second) {
					t.Fatalf("honest fetch took %v under attack, unattacked %v", took, calm)
				}
			})
		}
	}
}
