package network

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

func TestSmallCluster(t *testing.T) {
	before := runtime.NumGoroutine()
	nodes := startCluster(t, 10, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, n := range nodes {
		t.Logf("node %d table %d", i, n.TableSize())
	}
	sp := signPacket(testKey(1), 1000, []byte("hello"))
	if err := nodes[3].PutRecord(ctx, sp); err != nil {
		t.Fatal(err)
	}
	got, st, err := nodes[7].GetRecord(ctx, sp.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("get stats %+v", st)
	if got.Seq != sp.Seq || string(got.Packet) != "hello" {
		t.Fatalf("got %+v", got)
	}
	var s release.SwarmID
	s[0] = 7
	if err := nodes[2].Announce(ctx, s); err != nil {
		t.Fatal(err)
	}
	ch, err := nodes[8].FindPeers(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	peers := collect(ch)
	if !peers[nodes[2].QUICAddr()] {
		t.Fatalf("peers %v lack %v", peers, nodes[2].QUICAddr())
	}
	_, _, err = nodes[5].GetRecord(ctx, signPacket(testKey(2), 1, nil).PublicKey)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}
	checkNoLeak(t, before)
}
