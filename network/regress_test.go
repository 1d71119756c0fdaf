package network

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/release"
)

// TestPeerStoreKeyedByAddrPort: the library's store keys peers by IP only, so
// of several peers on one address only the last survived.
func TestPeerStoreKeyedByAddrPort(t *testing.T) {
	ps := newPeerStore(10, 10, time.Hour)
	var ih [20]byte
	for port := 1000; port < 1005; port++ {
		ps.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	}
	ps.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 1000}) // same peer, 4-byte form
	got := ps.GetPeers(ih)
	if len(got) != 5 {
		t.Fatalf("got %d peers %v, want 5 distinct ports", len(got), got)
	}
	ps.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0}) // no port: not stored
	if n := ps.len(ih); n != 5 {
		t.Fatalf("port 0 stored: %d peers", n)
	}
}

func TestPeerStoreBoundsAndExpiry(t *testing.T) {
	ps := newPeerStore(2, 3, time.Hour)
	var a, b, c [20]byte
	a[0], b[0], c[0] = 1, 2, 3
	for port := 1; port <= 5; port++ {
		ps.AddPeer(a, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 2), Port: port})
	}
	if n := ps.len(a); n != 3 {
		t.Fatalf("swarm holds %d peers, cap 3", n)
	}
	ps.AddPeer(b, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1})
	ps.AddPeer(c, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1})
	if ps.len(a) != 0 || ps.len(c) != 1 {
		t.Fatalf("oldest swarm not evicted: a=%d c=%d", ps.len(a), ps.len(c))
	}
	many := newPeerStore(1, 1000, time.Hour)
	for port := 1; port <= 200; port++ {
		many.AddPeer(a, krpc.NodeAddr{IP: net.IPv4(127, 0, 1, byte(port)), Port: port})
	}
	if got := len(many.GetPeers(a)); got != maxPeersPerReply {
		t.Fatalf("reply carries %d peers, cap %d", got, maxPeersPerReply)
	}
	short := newPeerStore(1, 10, time.Nanosecond)
	short.AddPeer(a, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1})
	deadline := time.Now().Add(time.Second)
	for len(short.GetPeers(a)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("peer did not expire")
		}
	}
}

// TestAnnouncersOnOneIP: three announcers on 127.0.0.1 are all found (the
// DHT hands out tokens only with a peer store, and the store keys by
// ip:port).
func TestAnnouncersOnOneIP(t *testing.T) {
	nodes := startCluster(t, 8, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s release.SwarmID
	copy(s[:], "three on one address")
	want := map[netip.AddrPort]bool{}
	for _, n := range nodes[1:4] {
		if err := n.Announce(ctx, s); err != nil {
			t.Fatalf("announce: %v", err)
		}
		want[n.QUICAddr()] = true
	}
	ch, err := nodes[6].FindPeers(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(ch)
	for ap := range want {
		if !got[ap] {
			t.Errorf("announcer %v not found; got %v", ap, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("found %v, want exactly %v", got, want)
	}
}

// rawQuery sends one KRPC query from a plain loopback socket and returns the
// answer.
func rawQuery(t *testing.T, to netip.AddrPort, q string, a krpc.MsgArgs) *krpc.Msg {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a.ID = krpc.RandomNodeID()
	b, err := bencode.Marshal(krpc.Msg{T: "tx", Y: "q", Q: q, A: &a})
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; try < 5; try++ {
		if _, err := c.WriteTo(b, net.UDPAddrFromAddrPort(to)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 2048)
		n, _, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var m krpc.Msg
		if err := bencode.Unmarshal(buf[:n], &m); err != nil {
			t.Fatalf("answer %q: %v", buf[:n], err)
		}
		if m.T != "tx" || m.Y == "q" {
			// The node asked may query us back (it learnt a new contact):
			// that is not the answer, which may still come.
			continue
		}
		return &m
	}
	t.Fatalf("no answer to %s from %v", q, to)
	return nil
}

// TestFindNodeAndGetAnswerAroundTarget: the server used A.InfoHash (zero for
// find_node and get) as the target, so answers listed nodes close to the
// zero ID. Nodes have fixed IDs spread over the space; the node asked (0xea..)
// knows the target (0xf5..), which a zero-target answer (nodes < 0x80 only,
// from the asked node's bucket 0) would leave out.
func TestFindNodeAndGetAnswerAroundTarget(t *testing.T) {
	const count = 24
	ids := make([][20]byte, count)
	for i := range ids {
		ids[i][0] = byte(i * 256 / count)
		ids[i][19] = byte(i)
	}
	nodes := startCluster(t, count, func(i int, c *Config) { c.NodeID = &ids[i] })
	asked, target := nodes[count-2], nodes[count-1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Make the target a good node in the asked node's table.
	ap := target.DHTAddr()
	if res := asked.query(ctx, krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}, "ping", krpc.MsgArgs{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, q := range []string{"find_node", "get"} {
		m := rawQuery(t, asked.DHTAddr(), q, krpc.MsgArgs{Target: ids[count-1]})
		if m.R == nil {
			t.Fatalf("%s: no answer: %+v", q, m)
		}
		found := false
		for _, ni := range m.R.Nodes {
			found = found || ni.ID == ids[count-1]
		}
		if !found {
			t.Errorf("%s for %x: target node not in answer %v", q, ids[count-1][:2], m.R.Nodes)
		}
	}
}

// nodeListed reports whether id is in the server's table.
func nodeListed(s *dht.Server, id [20]byte) bool {
	for _, ni := range s.Nodes() {
		if ni.ID == id {
			return true
		}
	}
	return false
}

// TestOwnSendLimiter: every node has its own limiter; the library's
// process-wide default is never used. With the default limiter stopped, a
// cluster still works.
func TestOwnSendLimiter(t *testing.T) {
	lim, burst := dht.DefaultSendLimiter.Limit(), dht.DefaultSendLimiter.Burst()
	dht.DefaultSendLimiter.SetLimit(0)
	dht.DefaultSendLimiter.SetBurst(0)
	defer func() {
		dht.DefaultSendLimiter.SetLimit(lim)
		dht.DefaultSendLimiter.SetBurst(burst)
	}()
	nodes := startCluster(t, 4, func(i int, c *Config) { c.SendRate = 1000; c.SendBurst = 100 })
	if nodes[1].limiter == nodes[2].limiter || nodes[1].limiter == dht.DefaultSendLimiter {
		t.Fatal("nodes share a send limiter")
	}
	if nodes[1].limiter.Limit() != rate.Limit(1000) || nodes[1].limiter.Burst() != 100 {
		t.Fatalf("limiter %v/%d, want 1000/100", nodes[1].limiter.Limit(), nodes[1].limiter.Burst())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sp := signPacket(testKey(4), 5, []byte("limiter"))
	if err := nodes[1].PutRecord(ctx, sp); err != nil {
		t.Fatalf("put with the default limiter stopped: %v", err)
	}
	if _, _, err := nodes[3].GetRecord(ctx, sp.PublicKey); err != nil {
		t.Fatalf("get with the default limiter stopped: %v", err)
	}
}

// flakyConn fails its first reads with a deadline error and a plain error,
// as a custom conn may; the server used to panic on any ReadFrom error.
type flakyConn struct {
	net.PacketConn
	mu    sync.Mutex
	fails []error
}

func (c *flakyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	if len(c.fails) > 0 {
		err := c.fails[0]
		c.fails = c.fails[1:]
		c.mu.Unlock()
		return 0, nil, err
	}
	c.mu.Unlock()
	return c.PacketConn.ReadFrom(b)
}

func TestReadErrorsBeforeCloseDoNotCrash(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fc := &flakyConn{PacketConn: pc, fails: []error{os.ErrDeadlineExceeded, errors.New("transient"), os.ErrDeadlineExceeded}}
	first := testConfig(t)
	first.NoBootstrap = true
	first.DHTConn = fc
	a := newTestNode(t, first)
	cfg := testConfig(t)
	cfg.Bootstrap = []string{a.DHTAddr().String()}
	b := newTestNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap through a flaky conn: %v", err)
	}
	if n := a.dhtConn.readErrors.Load(); n != 3 {
		t.Fatalf("read errors seen %d, want 3", n)
	}
	// A conn passed in is not closed by Close, and is readable again.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); err != nil {
		t.Fatalf("caller's conn closed by Node.Close: %v", err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := pc.ReadFrom(make([]byte, 10)); err != nil {
		t.Fatalf("caller's conn unusable after Node.Close: %v", err)
	}
}

// TestHostilePacketsDoNotCrash sends packets that crash anacrolix/dht
// v2.24.0: a compact address shorter than 2 bytes (decoder panic), and
// announce_peer / put without arguments (nil dereference in the handler).
func TestHostilePacketsDoNotCrash(t *testing.T) {
	cfg := testConfig(t)
	cfg.NoBootstrap = true
	n := newTestNode(t, cfg)
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := net.UDPAddrFromAddrPort(n.DHTAddr())
	id := string(bytes.Repeat([]byte{7}, 20))
	hostile := []string{
		"d2:ip0:1:t2:aa1:y1:re",
		"d1:rd2:id20:" + id + "6:valuesl1:xee1:t2:aa1:y1:re",
		"d1:q13:announce_peer1:t2:aa1:y1:qe",
		"d1:q3:put1:t2:aa1:y1:qe",
		"d1:q4:ping1:t2:aa1:y1:q", // truncated: the library would log it globally
	}
	for _, p := range hostile {
		if _, err := c.WriteTo([]byte(p), to); err != nil {
			t.Fatal(err)
		}
	}
	// The node still answers.
	m := rawQuery(t, n.DHTAddr(), "ping", krpc.MsgArgs{})
	if m.R == nil {
		t.Fatalf("no ping answer after hostile packets: %+v", m)
	}
	if got := n.DroppedPackets(); got != 3 {
		t.Errorf("dropped %d packets, want 3 (two decoder crashers, one truncated)", got)
	}
}

// recordingConn records every destination written to.
type recordingConn struct {
	net.PacketConn
	mu   sync.Mutex
	dsts []net.Addr
}

func (c *recordingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.dsts = append(c.dsts, addr)
	c.mu.Unlock()
	return c.PacketConn.WriteTo(b, addr)
}

// TestOnlyLoopbackWithExplicitStartingNodes: a node given starting nodes
// sends nothing outside 127.0.0.0/8, on either socket, through bootstrap,
// records and peers.
func TestOnlyLoopbackWithExplicitStartingNodes(t *testing.T) {
	nodes := startCluster(t, 6, nil)
	dc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	qc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer qc.Close()
	rd, rq := &recordingConn{PacketConn: dc}, &recordingConn{PacketConn: qc}
	cfg := testConfig(t)
	cfg.DHTConn, cfg.QUICConn = rd, rq
	cfg.Bootstrap = []string{nodes[2].DHTAddr().String()}
	n := newTestNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	sp := signPacket(testKey(5), 9, []byte("loopback"))
	if err := n.PutRecord(ctx, sp); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.GetRecord(ctx, sp.PublicKey); err != nil {
		t.Fatal(err)
	}
	var s release.SwarmID
	if err := n.Announce(ctx, s); err != nil {
		t.Fatal(err)
	}
	collect(must(n.FindPeers(ctx, s)))
	n.Close()
	loop := netip.MustParsePrefix("127.0.0.0/8")
	for _, rc := range []*recordingConn{rd, rq} {
		rc.mu.Lock()
		if rc == rd && len(rc.dsts) == 0 {
			t.Error("recorded no DHT packets")
		}
		for _, d := range rc.dsts {
			ap := addrPortOfNet(d)
			if !loop.Contains(ap.Addr().Unmap()) {
				t.Errorf("packet sent to %v, outside 127.0.0.0/8", d)
			}
		}
		rc.mu.Unlock()
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// liar is a DHT node that answers every get with a forged record and every
// other query with an empty answer.
func liar(t *testing.T, forged *release.SignedPacket) (netip.AddrPort, [20]byte) {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	id := [20]byte(recordTarget(forged.PublicKey)) // as close to the target as can be
	id[19] ^= 1
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			var q krpc.Msg
			if bencode.Unmarshal(buf[:n], &q) != nil || q.Y != "q" {
				continue
			}
			tok := "liar"
			r := krpc.Return{ID: id, Token: &tok}
			if q.Q == "get" {
				seq := forged.Seq
				r.V = bencode.MustMarshal(forged.Packet)
				r.K, r.Sig, r.Seq = forged.PublicKey, forged.Sig, &seq
			}
			b := bencode.MustMarshal(krpc.Msg{T: q.T, Y: "r", R: &r})
			c.WriteTo(b, from)
		}
	}()
	return addrPortOfNet(c.LocalAddr()), id
}

// TestGetIgnoresInvalidRecords: a node answering with a forged record of a
// higher seq is counted and ignored; the valid record wins.
func TestGetIgnoresInvalidRecords(t *testing.T) {
	nodes := startCluster(t, 10, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	priv := testKey(6)
	good := signPacket(priv, 100, []byte("good"))
	bad := *signPacket(priv, 200, []byte("forged"))
	bad.Sig[0] ^= 1
	la, _ := liar(t, &bad)
	getter := nodes[9]
	if res := getter.query(ctx, krpc.NodeAddr{IP: la.Addr().AsSlice(), Port: int(la.Port())}, "ping", krpc.MsgArgs{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	// Only a forged copy: not found, counted.
	_, st, err := getter.GetRecord(ctx, good.PublicKey)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("forged-only get: err %v", err)
	}
	if st.Invalid != 1 || st.Valid != 0 {
		t.Fatalf("forged-only get stats %+v: want invalid 1, valid 0", st)
	}
	if err := nodes[2].PutRecord(ctx, good); err != nil {
		t.Fatal(err)
	}
	got, st, err := getter.GetRecord(ctx, good.PublicKey)
	if err != nil {
		t.Fatalf("get: %v (%+v)", err, st)
	}
	if got.Seq != good.Seq || string(got.Packet) != "good" || st.Invalid != 1 || st.Valid == 0 {
		t.Fatalf("got seq %d %q stats %+v", got.Seq, got.Packet, st)
	}
	// PutRecord refuses a forged packet outright.
	if err := nodes[0].PutRecord(ctx, &bad); !errors.Is(err, release.ErrBadSignature) {
		t.Fatalf("put forged: %v", err)
	}
}

// TestSeqNewestWins: a newer seq replaces the old one, a stale node's older
// copy loses, and putting an older seq is refused with ErrSuperseded.
func TestSeqNewestWins(t *testing.T) {
	nodes := startCluster(t, 10, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	priv := testKey(7)
	v1 := signPacket(priv, 1_000, []byte("v1"))
	v2 := signPacket(priv, 2_000, []byte("v2"))
	if err := nodes[1].PutRecord(ctx, v1); err != nil {
		t.Fatal(err)
	}
	// Anyone may re-put a record signed by someone else.
	if err := nodes[5].PutRecord(ctx, v1); err != nil {
		t.Fatalf("re-put: %v", err)
	}
	if err := nodes[2].PutRecord(ctx, v2); err != nil {
		t.Fatal(err)
	}
	// A stale node that still holds v1 only.
	stale := nodes[3]
	stale.items.Del(bep44.Target(recordTarget(v1.PublicKey)))
	if err := stale.local.Put(&bep44.Item{V: v1.Packet, K: v1.PublicKey, Sig: v1.Sig, Seq: v1.Seq}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[4:] {
		got, st, err := n.GetRecord(ctx, v1.PublicKey)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if got.Seq != v2.Seq || string(got.Packet) != "v2" {
			t.Fatalf("got seq %d %q (%+v), want v2", got.Seq, got.Packet, st)
		}
	}
	if err := nodes[6].PutRecord(ctx, v1); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("put of older seq: %v, want ErrSuperseded", err)
	}
}

// TestCloseLeavesNoGoroutine also checks that operations after Close fail
// cleanly.
func TestCloseThenUse(t *testing.T) {
	cfg := testConfig(t)
	cfg.NoBootstrap = true
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, _, err := n.GetRecord(ctx, release.PublicKey{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	if err := n.Bootstrap(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("bootstrap after close: %v", err)
	}
	if _, err := n.FindPeers(ctx, release.SwarmID{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("find peers after close: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	same, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer same.Close()
	for _, c := range []Config{
		{Bootstrap: []string{"no-port"}},
		{Bootstrap: []string{"127.0.0.1:0"}},
		{Bootstrap: []string{":6881"}},
		{SendRate: -1},
		{QueryResendDelay: -time.Second},
		{DHTConn: same, QUICConn: same},
	} {
		if _, err := New(context.Background(), c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("config %+v: err %v, want ErrBadConfig", c, err)
		}
	}
	c, err := Config{}.populate()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Bootstrap) != len(PublicRouters) || c.ListenDHT != ":0" {
		t.Fatalf("defaults: %+v", c)
	}
	c, _ = Config{NoBootstrap: true, Bootstrap: []string{"127.0.0.1:1"}}.populate()
	if c.Bootstrap != nil {
		t.Fatalf("NoBootstrap kept %v", c.Bootstrap)
	}
}

// TestLoneNodeKeepsRecord: a put on a node with nobody to talk to fails with
// ErrNoNodes but keeps the record, and a node that joins later gets it.
func TestLoneNodeKeepsRecord(t *testing.T) {
	cfg := testConfig(t)
	cfg.NoBootstrap = true
	lone := newTestNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sp := signPacket(testKey(11), 3, []byte("lone"))
	if err := lone.PutRecord(ctx, sp); !errors.Is(err, ErrNoNodes) {
		t.Fatalf("lone put: %v, want ErrNoNodes", err)
	}
	if got, _, err := lone.GetRecord(ctx, sp.PublicKey); err != nil || got.Seq != sp.Seq {
		t.Fatalf("lone get: %v", err)
	}
	cfg = testConfig(t)
	cfg.Bootstrap = []string{lone.DHTAddr().String()}
	late := newTestNode(t, cfg)
	if err := late.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, err := late.GetRecord(ctx, sp.PublicKey)
	if err != nil || string(got.Packet) != "lone" {
		t.Fatalf("late get: %v", err)
	}
}

// TestPeerStoreFakePortFlood: one address announcing 200 ports keeps only
// maxPortsPerIP of them, the honest peers of the swarm stay listed, and a
// reply lists the most recently announced peers.
func TestPeerStoreFakePortFlood(t *testing.T) {
	ps := newPeerStore(10, 512, time.Hour)
	var ih [20]byte
	honest := []krpc.NodeAddr{{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 4000}, {IP: net.IPv4(127, 0, 0, 3).To4(), Port: 4001}}
	for _, h := range honest {
		ps.AddPeer(ih, h)
	}
	for port := 10000; port < 10200; port++ {
		ps.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 66), Port: port})
	}
	got := ps.GetPeers(ih)
	if len(got) != len(honest)+maxPortsPerIP {
		t.Fatalf("got %d peers, want the %d honest and %d of the flood", len(got), len(honest), maxPortsPerIP)
	}
	for _, h := range honest {
		if !slices.ContainsFunc(got, func(na krpc.NodeAddr) bool { return na.String() == h.String() }) {
			t.Errorf("honest peer %v buried", h)
		}
	}
	// 127.0.0.1 is exempt: tests and the demo run every node there.
	for port := 5000; port < 5100; port++ {
		ps.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	}
	if n := ps.len(ih); n != len(honest)+maxPortsPerIP+100 {
		t.Fatalf("%d peers stored", n)
	}
	// A full reply: its first half is the most recently announced.
	got = ps.GetPeers(ih)
	if len(got) != maxPeersPerReply {
		t.Fatalf("reply carries %d peers", len(got))
	}
	for _, na := range got[:maxPeersPerReply/2] {
		if na.Port < 5000+100-maxPeersPerReply/2 {
			t.Fatalf("reply starts with %v, not among the newest", na)
		}
	}
}
