package network

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// firstCopyLost drops the first copy of every distinct packet it is asked
// to send; a resent query (same bytes, same transaction ID) goes through.
type firstCopyLost struct {
	net.PacketConn
	mu   sync.Mutex
	seen map[[32]byte]bool
	lost int
}

func (c *firstCopyLost) WriteTo(b []byte, addr net.Addr) (int, error) {
	h := sha256.Sum256(append([]byte(addr.String()), b...))
	c.mu.Lock()
	first := !c.seen[h]
	c.seen[h] = true
	if first {
		c.lost++
	}
	c.mu.Unlock()
	if first {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

// TestQueriesAreResent: the library sends a query once; with every first
// copy lost, a node can only bootstrap and get a record because this
// package's queries are resent after QueryResendDelay.
func TestQueriesAreResent(t *testing.T) {
	nodes := startCluster(t, 6, nil)
	sp := signPacket(testKey(8), 77, []byte("resend"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nodes[1].PutRecord(ctx, sp); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	lossy := &firstCopyLost{PacketConn: pc, seen: make(map[[32]byte]bool)}
	cfg := testConfig(t)
	cfg.DHTConn = lossy
	cfg.QueryResendDelay = 100 * time.Millisecond
	cfg.Bootstrap = []string{nodes[0].DHTAddr().String()}
	n := newTestNode(t, cfg)
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap with every first copy lost: %v", err)
	}
	got, _, err := n.GetRecord(ctx, sp.PublicKey)
	if err != nil {
		t.Fatalf("get with every first copy lost: %v", err)
	}
	if got.Seq != sp.Seq {
		t.Fatalf("got seq %d", got.Seq)
	}
	lossy.mu.Lock()
	defer lossy.mu.Unlock()
	if lossy.lost == 0 {
		t.Fatal("nothing was lost")
	}
}

// TestGetReturnsBeforeStall: getput.Get returns only when the whole
// traversal stalls. Here a node that never answers sits in the getter's
// table and the resend delay is an hour, so a get that waited for the stall
// would hang; GetRecord returns GetGrace after the first valid answer.
func TestGetReturnsBeforeStall(t *testing.T) {
	nodes := startCluster(t, 6, nil)
	sp := signPacket(testKey(9), 78, []byte("prompt"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := nodes[1].PutRecord(ctx, sp); err != nil {
		t.Fatal(err)
	}
	hole, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	cfg := testConfig(t)
	cfg.QueryResendDelay = time.Hour
	cfg.QuerySends = 1
	cfg.Bootstrap = []string{nodes[0].DHTAddr().String()}
	cfg.NoMaintainer = true
	g := newTestNode(t, cfg)
	// Fill the table without Bootstrap (whose walks would wait on the hole).
	for _, o := range nodes {
		ap := o.DHTAddr()
		if res := g.query(ctx, krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}, "ping", krpc.MsgArgs{}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	holeID := recordTarget(sp.PublicKey) // closest of all: queried first
	holeID[19] ^= 1
	holeAddr := addrPortOfNet(hole.LocalAddr())
	if err := g.server.AddNode(krpc.NodeInfo{ID: holeID, Addr: krpc.NodeAddr{IP: holeAddr.Addr().AsSlice(), Port: int(holeAddr.Port())}}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  GetStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, st, err := g.GetRecord(ctx, sp.PublicKey)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("get: %v", r.err)
		}
		if r.st.Responses >= r.st.Queried {
			t.Fatalf("stats %+v: the silent node should be queried and unanswered", r.st)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("GetRecord waited for the stalled traversal")
	}
}

// TestLogsBridged: the DHT library's logs reach the node's slog.Logger.
func TestLogsBridged(t *testing.T) {
	var mu sync.Mutex
	var b strings.Builder
	h := slog.NewTextHandler(lockedWriter{&mu, &b}, &slog.HandlerOptions{Level: slog.LevelDebug})
	cfg := testConfig(t)
	cfg.NoBootstrap = true
	cfg.Logger = slog.New(h)
	n := newTestNode(t, cfg)
	rawQuery(t, n.DHTAddr(), "ping", krpc.MsgArgs{})
	n.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(b.String(), "component=dht") {
		t.Fatalf("no DHT log line reached slog:\n%s", b.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
