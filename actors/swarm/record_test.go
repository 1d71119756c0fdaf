package swarm

import (
	"testing"

	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// signedRecord returns a record under sk with sequence number seq.
func signedRecord(t testing.TB, sk []byte, seq int64) *release.SignedPacket {
	t.Helper()
	sp, err := release.NewSignedPacket(sk, []release.Entry{{
		App: "app", Channel: "stable", Platform: "linux-amd64",
		Version: semver.MustParse("1.2.3"), ManifestID: release.ManifestID{9}, Size: 4096,
	}}, seq)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestRecordGossipDeduplicated: a peer that repeats a genuine record, sends
// an older one under the same key, a forgery with the key and seq of the
// first, another forgery twice and this node's own record back costs one
// signature check per distinct record, and each genuine record is passed on
// once (an older one too: the resolver refuses it and says so). Past
// recordBurst records the peer's further records are not even read.
func TestRecordGossipDeduplicated(t *testing.T) {
	r := newRig(t, Config{})
	joined := release.ManifestID{0xdd}
	bad, ctx := r.hostile(t, joined)
	send := func(m wire.Message) {
		t.Helper()
		if err := bad.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	own := signedRecord(t, newKey(t), 500)
	r.sys.Root.Send(r.swarm, &Gossip{Packet: own}) // this node's record, echoed below
	sk := newKey(t)
	rec := signedRecord(t, sk, 1000)
	forged := rec.EncodeRelay()
	forged[len(forged)-1] ^= 1 // same key and seq as rec
	other := signedRecord(t, newKey(t), 1000).EncodeRelay()
	other[len(other)-1] ^= 1 // a forgery under a key not seen yet
	for _, relay := range [][]byte{
		own.EncodeRelay(), rec.EncodeRelay(), rec.EncodeRelay(),
		signedRecord(t, sk, 999).EncodeRelay(), forged, other, other,
	} {
		send(&wire.Record{Relay: relay})
	}
	r.settled(ctx, bad, joined)
	if got := r.ctr.recordChecks.Load(); got != 3 {
		t.Errorf("%d signature checks for 7 records, 3 of them distinct and not this node's; want 3", got)
	}
	r.rec.mu.Lock()
	var seqs []int64
	for _, g := range r.rec.records {
		seqs = append(seqs, g.Packet.Seq)
	}
	r.rec.mu.Unlock()
	if len(seqs) != 2 || seqs[0] != 1000 || seqs[1] != 999 {
		t.Errorf("passed on records with seq %v, want 1000 and 999 once each", seqs)
	}

	// Distinct genuine records: one is left of the burst (7 were used).
	for seq := range int64(20) {
		send(&wire.Record{Relay: signedRecord(t, newKey(t), 2000+seq).EncodeRelay()})
	}
	r.settled(ctx, bad, joined)
	// One more token may have come in while the test ran.
	if got := r.ctr.recordChecks.Load(); got < 4 || got > 5 {
		t.Errorf("%d signature checks after 20 more records, want 4 (5 if the limiter refilled)", got)
	}
	t.Logf("27 records sent, %d signatures checked", r.ctr.recordChecks.Load())
}
