package network

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// TestPeerStoreForgetsDeadAnnouncer: an announced peer is not handed out
// while the DHT node that announced it fails to answer this node, and comes
// back once that node is heard again; an entry whose announcer is unknown
// (or alive) stays. The announced port is the query's port, or the source
// port with implied_port.
func TestPeerStoreForgetsDeadAnnouncer(t *testing.T) {
	ps := newPeerStore(10, 10, time.Hour)
	dead := map[netip.AddrPort]bool{}
	ps.dead = func(ap netip.AddrPort) bool { return dead[ap] }
	var ih peer_store.InfoHash
	announce := func(from netip.AddrPort, port int, implied bool) netip.AddrPort {
		m := &krpc.Msg{Q: "announce_peer", A: &krpc.MsgArgs{Port: &port, ImpliedPort: implied}}
		ps.noteAnnounce(m, net.UDPAddrFromAddrPort(from))
		p := port
		if implied {
			p = int(from.Port())
		}
		ps.AddPeer(ih, krpc.NodeAddr{IP: from.Addr().AsSlice(), Port: p})
		return netip.AddrPortFrom(from.Addr(), uint16(p))
	}
	gone := netip.MustParseAddrPort("127.0.0.3:6881")
	alive := netip.MustParseAddrPort("127.0.0.4:6881")
	a := announce(gone, 4433, false)
	b := announce(alive, 4433, false)
	c := announce(netip.MustParseAddrPort("127.0.0.5:7000"), 0, true)
	// Announced without a noted source (as by an older query path): kept.
	ps.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 6), Port: 4433})
	d := netip.MustParseAddrPort("127.0.0.6:4433")

	has := func(want ...netip.AddrPort) {
		t.Helper()
		var got []netip.AddrPort
		for _, na := range ps.GetPeers(ih) {
			ap, _ := addrPortOf(na)
			got = append(got, ap)
		}
		slices.SortFunc(got, func(x, y netip.AddrPort) int { return x.Compare(y) })
		slices.SortFunc(want, func(x, y netip.AddrPort) int { return x.Compare(y) })
		if !slices.Equal(got, want) {
			t.Fatalf("peers %v, want %v", got, want)
		}
	}
	has(a, b, c, d)
	if c.Port() != 7000 {
		t.Fatalf("implied port: stored %v", c)
	}
	dead[gone] = true
	has(b, c, d)
	dead[netip.MustParseAddrPort("127.0.0.5:7000")] = true
	has(b, d)
	delete(dead, gone) // heard again
	has(a, b, d)
}
