package swarm

import (
	"net/netip"
	"testing"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// TestDialable: only an address that could be a node's QUIC endpoint is
// ever dialled. The refused addresses here are data only: no test sends
// anything to them.
func TestDialable(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.2:4000", true},
		{"127.1.2.3:4000", true},
		{"127.255.0.1:4000", true},
		{"[::1]:4000", true},
		{"[::ffff:127.0.0.1]:4000", true},
		{"127.0.0.1:0", false},
		{"127.1.2.3:0", false},
		{"0.0.0.0:4000", false},
		{"[::]:4000", false},
		{"224.0.0.1:4000", false},
		{"239.255.255.250:1900", false},
		{"[ff02::1]:4000", false},
		{"255.255.255.255:4000", false},
		{"[::ffff:255.255.255.255]:4000", false},
		{"169.254.1.1:4000", false},
		{"[fe80::1]:4000", false},
	} {
		a := netip.MustParseAddrPort(c.addr)
		if got := dialable(a); got != c.ok {
			t.Errorf("dialable(%s) = %v, want %v", c.addr, got, c.ok)
		}
	}
}

// TestPeerExchangeRateLimited: a peer that sends Peers messages full of
// addresses (all on loopback, where nothing listens, and some with port 0)
// gets at most pexPeerBurst of them dialled, however many messages it
// sends, and none with port 0.
func TestPeerExchangeRateLimited(t *testing.T) {
	r := newRig(t, Config{MaxPeers: 1000})
	joined := release.ManifestID{0xcc}
	bad, ctx := r.hostile(t, joined)
	const msgs = 10
	for i := range msgs {
		var addrs []netip.AddrPort
		for j := range wire.DefaultMaxPeers {
			port := uint16(9000 + j)
			if j%2 == 0 {
				port = 0
			}
			addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i), byte(j)}), port))
		}
		if err := bad.Send(ctx, &wire.Peers{Addrs: addrs}); err != nil {
			t.Fatal(err)
		}
	}
	r.settled(ctx, bad, joined)
	got := r.ctr.dials.Load()
	if got == 0 || got > pexPeerBurst+1 {
		t.Fatalf("%d dials for %d addresses in %d Peers messages, want 1 to %d", got, msgs*wire.DefaultMaxPeers, msgs, pexPeerBurst+1)
	}
	t.Logf("%d dials for %d addresses", got, msgs*wire.DefaultMaxPeers)
}
