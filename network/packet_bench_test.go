package network

import (
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// benchAnswer is a typical get answer: 8 nodes, a token and a record.
func benchAnswer(b *testing.B) []byte {
	token := "0123456789"
	seq := int64(1_700_000_000_000_000)
	v, _ := bencode.Marshal(make([]byte, 600))
	r := &krpc.Return{Token: &token, Bep44Return: krpc.Bep44Return{V: v, Seq: &seq}}
	for i := range 8 {
		r.Nodes = append(r.Nodes, nodeInfo(byte(i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 20, 0, byte(i + 1)}), 6881)))
	}
	pkt, err := bencode.Marshal(krpc.Msg{Y: "r", T: "aa", R: r})
	if err != nil {
		b.Fatal(err)
	}
	return pkt
}

// BenchmarkGuardAnswer is the guard's cost for one received get answer
// (the server's own decode not included).
func BenchmarkGuardAnswer(b *testing.B) {
	pkt := benchAnswer(b)
	b.ReportAllocs()
	for b.Loop() {
		if !decodesSafely(pkt) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkFilterAnswer is the liveness filter's cost for one sent get
// answer while 100 nodes are masked, one of them listed in the answer.
func BenchmarkFilterAnswer(b *testing.B) {
	pkt := benchAnswer(b)
	l := newLiveness(time.Hour, 4096)
	for i := range 100 {
		l.failed(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 30, 0, byte(i)}), 6881))
	}
	l.failed(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 20, 0, 3}), 6881))
	b.ReportAllocs()
	for b.Loop() {
		if len(l.filterReply(pkt)) >= len(pkt) {
			b.Fatal("nothing cut")
		}
	}
}

// BenchmarkLivenessFull marks departed nodes while the mask is full
// (every mark evicts the oldest).
func BenchmarkLivenessFull(b *testing.B) {
	l := newLiveness(time.Hour, 4096)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		l.failed(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)}), 6881))
	}
}
