package network

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// silentNode is a UDP socket on loopback that never answers.
func silentNode(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// TestThreeErrors: nobody answering, nobody holding the record, and time
// running out while nodes answer are three distinct errors.
func TestThreeErrors(t *testing.T) {
	pub := signPacket(testKey(7), 1, []byte("x")).PublicKey
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg := testConfig(t)
	cfg.Bootstrap = []string{silentNode(t)}
	cfg.QueryResendDelay = 100 * time.Millisecond
	lone := newTestNode(t, cfg)
	if _, _, err := lone.GetRecord(ctx, pub); !errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrTimedOut) {
		t.Errorf("silent bootstrap node: %v, want ErrNoAnswer", err)
	}
	if err := lone.PutRecord(ctx, signPacket(testKey(7), 1, []byte("x"))); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("put with a silent bootstrap node: %v, want ErrNoAnswer", err)
	}

	nodes := startCluster(t, 4, nil)
	if _, _, err := nodes[3].GetRecord(ctx, pub); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrTimedOut) {
		t.Errorf("no record: %v, want ErrNotFound", err)
	}

	// A node that answers, and one that never does, so the lookup cannot
	// end before the deadline.
	cfg = testConfig(t)
	cfg.Bootstrap = []string{nodes[0].DHTAddr().String(), silentNode(t)}
	cfg.QueryResendDelay = 10 * time.Second
	slow := newTestNode(t, cfg)
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	_, _, err := slow.GetRecord(sctx, pub)
	if !errors.Is(err, ErrTimedOut) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoAnswer) {
		t.Errorf("deadline while nodes answer: %v, want ErrTimedOut", err)
	}
}

// TestDepartedNodesMasked: a node that left the DHT is masked after one
// unanswered query: it is not queried again, and it is cut from the node
// lists this node hands out, although the library's routing table keeps it.
func TestDepartedNodesMasked(t *testing.T) {
	nodes := startCluster(t, 6, nil)
	first, gone := nodes[0], nodes[5]
	goneAddr := gone.DHTAddr()
	if !nodeListed(first.server, gone.ID()) {
		t.Fatal("the departing node is not in the first node's table")
	}
	listed := func() bool {
		m := rawQuery(t, first.DHTAddr(), "find_node", krpc.MsgArgs{Target: gone.ID()})
		for _, ni := range m.R.Nodes {
			if nodeAddrPort(ni.Addr) == goneAddr {
				return true
			}
		}
		return false
	}
	if !listed() {
		t.Fatal("the first node does not hand out the departing node while it is up")
	}
	gone.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.Bootstrap(ctx); err != nil { // pings the table
		t.Fatal(err)
	}
	// The socket rawQuery used has left too.
	if !first.live.isDead(goneAddr) || first.Stats().DeadNodes < 1 {
		t.Fatalf("%d nodes masked, not the departed one", first.Stats().DeadNodes)
	}
	if listed() {
		t.Error("the first node still hands out the departed node")
	}
}

// TestRestartKeepsPorts: a node restarted with the same port file listens
// on the same DHT and QUIC ports; if a port is taken it takes another and
// saves that.
func TestRestartKeepsPorts(t *testing.T) {
	cfg := testConfig(t)
	cfg.NoBootstrap = true
	cfg.PortFile = t.TempDir() + "/ports"
	first, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dht, quic := first.DHTAddr(), first.QUICAddr()
	first.Close()
	again := newTestNode(t, cfg)
	if again.DHTAddr() != dht || again.QUICAddr() != quic {
		t.Fatalf("restarted on %v/%v, was %v/%v", again.DHTAddr(), again.QUICAddr(), dht, quic)
	}
	// The ports are taken (by the running node): a third takes others.
	third := newTestNode(t, cfg)
	if third.QUICAddr() == quic || third.DHTAddr() == dht {
		t.Fatalf("third node on %v/%v", third.DHTAddr(), third.QUICAddr())
	}
	if d, q := readPorts(cfg.PortFile); d != int(third.DHTAddr().Port()) || q != int(third.QUICAddr().Port()) {
		t.Fatalf("port file holds %d/%d", d, q)
	}
}
