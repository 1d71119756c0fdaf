package network

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

func nodeInfo(b byte, ap netip.AddrPort) krpc.NodeInfo {
	var ni krpc.NodeInfo
	ni.ID[0] = b
	ni.Addr = krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
	return ni
}

// TestKRPCShaped: the messages nodes send are recognised without a decode;
// anything else is left to the full decode.
func TestKRPCShaped(t *testing.T) {
	var id krpc.ID
	port, seq := 4433, int64(7)
	token := "tok"
	a := netip.MustParseAddrPort("127.0.0.1:6881")
	shaped := []krpc.Msg{
		{Y: "q", Q: "ping", T: "aa", A: &krpc.MsgArgs{ID: id}},
		{Y: "q", Q: "find_node", T: "aa", A: &krpc.MsgArgs{ID: id, Target: id, Want: []krpc.Want{krpc.WantNodes, krpc.WantNodes6}}},
		{Y: "q", Q: "announce_peer", T: "aa", A: &krpc.MsgArgs{ID: id, InfoHash: id, Port: &port, Token: "t"}},
		{Y: "q", Q: "put", T: "aa", A: &krpc.MsgArgs{ID: id, Token: "t", Seq: &seq, V: []byte("value")}},
		{Y: "r", T: "aa", R: &krpc.Return{ID: id, Nodes: krpc.CompactIPv4NodeInfo{nodeInfo(1, a), nodeInfo(2, a)}, Token: &token}},
		{Y: "r", T: "aa", R: &krpc.Return{ID: id, Values: []krpc.NodeAddr{{IP: a.Addr().AsSlice(), Port: 1}}}, IP: krpc.NodeAddr{IP: a.Addr().AsSlice(), Port: 2}},
		{Y: "r", T: "aa", R: &krpc.Return{ID: id, Bep44Return: krpc.Bep44Return{V: []byte("5:hello"), Seq: &seq}}},
	}
	for _, m := range shaped {
		b, err := bencode.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !krpcShaped(b) {
			t.Errorf("not recognised: %q", b)
		}
	}
	for _, s := range []string{
		"d2:ip0:1:t2:aa1:y1:re", // an address of no length
		"d1:rd2:id20:abcdefghij01234567896:valuesl1:xee1:t2:aa1:y1:re",                                      // a peer of one byte
		"d1:rd2:id20:abcdefghij01234567895:nodes25:abcdefghij0123456789\x7f\x00\x00\x01\x1ae1:t2:aa1:y1:re", // a partial node
		"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",                                                            // a short ID
		"d1:eli201e5:errore1:t2:aa1:y1:ee",                                                                  // errors: left to the decode
		"d1:q4:ping1:t2:aa1:y1:q",                                                                           // unterminated
		"d1:xi1e1:t2:aa1:y1:re",                                                                             // an unknown key
		"d1:ad2:id20:abcdefghij01234567894:porti99999999999999999999ee1:q4:ping1:t2:aa1:y1:qe",              // an int past int64
	} {
		if krpcShaped([]byte(s)) {
			t.Errorf("recognised: %q", s)
		}
	}
}

// TestFilterReplyOnTheBytes: the liveness filter cuts exactly the dead
// nodes from an answer's node lists and keeps every other byte's meaning.
func TestFilterReplyOnTheBytes(t *testing.T) {
	l := newLiveness(time.Minute, 16)
	live1 := netip.MustParseAddrPort("127.0.0.1:1001")
	dead := netip.MustParseAddrPort("127.0.0.2:1002")
	live2 := netip.MustParseAddrPort("127.0.0.3:1003")
	dead6 := netip.MustParseAddrPort("[::1]:1004")
	token := "token"
	m := krpc.Msg{Y: "r", T: "tx", R: &krpc.Return{
		Nodes:  krpc.CompactIPv4NodeInfo{nodeInfo(1, live1), nodeInfo(2, dead), nodeInfo(3, live2)},
		Nodes6: krpc.CompactIPv6NodeInfo{nodeInfo(4, dead6)},
		Token:  &token,
	}}
	b, err := bencode.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.filterReply(b); !bytes.Equal(got, b) {
		t.Fatal("changed an answer while nothing is masked")
	}
	l.failed(netip.MustParseAddrPort("127.0.0.9:9")) // masked, not listed
	if got := l.filterReply(b); &got[0] != &b[0] {
		t.Fatal("copied an answer with no dead node in it")
	}
	l.failed(dead)
	l.failed(dead6)
	var got krpc.Msg
	if err := bencode.Unmarshal(l.filterReply(b), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.R.Nodes) != 2 || nodeAddrPort(got.R.Nodes[0].Addr) != live1 || nodeAddrPort(got.R.Nodes[1].Addr) != live2 ||
		got.R.Nodes[1].ID[0] != 3 {
		t.Errorf("nodes after the cut: %v", got.R.Nodes)
	}
	if len(got.R.Nodes6) != 0 || got.T != "tx" || got.R.Token == nil || *got.R.Token != token {
		t.Errorf("the rest of the answer changed: %+v", got)
	}
	// A query is never touched.
	q, _ := bencode.Marshal(krpc.Msg{Y: "q", Q: "ping", T: "tx", A: &krpc.MsgArgs{}})
	if got := l.filterReply(q); !bytes.Equal(got, q) {
		t.Error("changed a query")
	}
}

// TestLivenessEvictsOldestFirst: at its bound the oldest mark goes first,
// a node marked again counts from its new mark, and the queue of marks
// stays bounded.
func TestLivenessEvictsOldestFirst(t *testing.T) {
	l := newLiveness(time.Hour, 3)
	ap := func(i int) netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), 1) }
	l.failed(ap(1))
	l.failed(ap(2))
	l.failed(ap(3))
	l.failed(ap(1)) // marked again: now the newest
	l.failed(ap(4)) // evicts 2, the oldest
	if l.isDead(ap(2)) || !l.isDead(ap(1)) || !l.isDead(ap(3)) || !l.isDead(ap(4)) || l.len() != 3 {
		t.Errorf("after eviction: 1 %v, 2 %v, 3 %v, 4 %v, len %d", l.isDead(ap(1)), l.isDead(ap(2)), l.isDead(ap(3)), l.isDead(ap(4)), l.len())
	}
	for i := range 1000 {
		l.failed(ap(1 + i%5))
		l.heard(ap(1 + i%7))
	}
	if len(l.order) > 2*l.max+1 || l.len() > l.max {
		t.Errorf("order %d, dead %d, bound %d", len(l.order), l.len(), l.max)
	}
}
