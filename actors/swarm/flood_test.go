package swarm

import (
	"bytes"
	"context"
	"testing"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// TestControlFloodBounded: a hostile peer, over real QUIC on loopback,
// floods the swarm with Haves (repeats, releases nobody joined, indexes past
// the chunk count) after a Hello naming thousands of releases, and then
// with Hellos. The swarm holds at most one message per peer at a time,
// passes on only news of releases it joined or holds, and only once, drops
// the peer for the Hello flood; an honest peer's download completes
// meanwhile.
func TestControlFloodBounded(t *testing.T) {
	rel := newTestRelease(t)
	r := newRig(t, Config{}, rel)
	joined := release.ManifestID{0xaa, 0xbb}
	r.join(joined)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	bad := r.dial(t)
	// One Hello of almost MaxFrame: thousands of releases nobody wants,
	// the joined one, and the held one.
	big := &wire.Hello{}
	for i := range 6000 {
		big.Releases = append(big.Releases, wire.HaveSet{ID: release.ManifestID{1, byte(i), byte(i >> 8)}, Complete: true})
	}
	big.Releases = append(big.Releases,
		wire.HaveSet{ID: joined, Bitfield: []byte{0x80}},
		wire.HaveSet{ID: rel.sm.ID, Complete: true})
	if err := bad.Send(ctx, big); err != nil {
		t.Fatal(err)
	}
	const haves, distinct = 8000, 50
	flooded := make(chan int, 1)
	go func() {
		sent := 0
		defer func() { flooded <- sent }()
		for i := range haves {
			var m wire.Message
			switch i % 4 {
			case 0: // the joined release: distinct indexes, each many times
				m = &wire.Have{ID: joined, Index: uint32(i/4) % distinct}
			case 1: // the held release, announced complete already
				m = &wire.Have{ID: rel.sm.ID, Index: uint32(i % 4)}
			case 2: // releases nobody joined
				m = &wire.Have{ID: release.ManifestID{2, byte(i), byte(i >> 8)}, Index: uint32(i)}
			case 3: // past the held release's chunk count
				m = &wire.Have{ID: rel.sm.ID, Index: uint32(1000 + i)}
			}
			if bad.Send(ctx, m) != nil {
				return
			}
			sent++
		}
		for range 100 {
			if bad.Send(ctx, big) != nil {
				return
			}
			sent++
		}
	}()

	// The honest peer downloads the whole release during the flood.
	good := r.dial(t)
	if err := good.Send(ctx, &wire.Hello{}); err != nil {
		t.Fatal(err)
	}
	m := rel.sm.Manifest
	for i := range m.NumChunks() {
		dst := make([]byte, m.ChunkLen(i))
		if err := good.GetChunk(ctx, rel.sm.ID, uint32(i), dst); err != nil {
			t.Fatalf("honest peer, chunk %d: %v", i, err)
		}
		if want := rel.data[m.ChunkOffset(i):][:len(dst)]; !bytes.Equal(dst, want) {
			t.Fatalf("honest peer, chunk %d: wrong bytes", i)
		}
	}

	select {
	case <-bad.Done():
	case <-ctx.Done():
		t.Fatal("the Hello flood did not get the peer dropped")
	}
	sent := <-flooded
	if sent < haves {
		t.Fatalf("the peer was dropped after %d messages, before its Hello flood", sent)
	}
	if peak := r.ctr.queuedPeak.Load(); peak > 2 {
		t.Errorf("%d peer messages queued for the swarm at once, want at most one per peer (2)", peak)
	}
	bid := bad.LocalID()
	r.waitUntil("news from the hostile peer", func(rec *recorder) bool { return rec.peerHas[bid] > 0 })
	// Each Hello the swarm took (helloBurst, the rest dropped the peer)
	// names two wanted releases; each distinct Have of the joined release
	// is new once.
	r.rec.mu.Lock()
	got := r.rec.peerHas[bid]
	r.rec.mu.Unlock()
	if limit := 2*helloBurst + distinct; got > limit {
		t.Errorf("%d PeerHas passed on for %d messages, want at most %d", got, sent+1, limit)
	}
	t.Logf("hostile peer: %d messages sent, %d PeerHas passed on, peak queue %d", sent+1, got, r.ctr.queuedPeak.Load())
}
