package network

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkBootstrap100 starts and bootstraps 100 nodes on loopback (wall
// clock, in waves of 10 as startCluster does).
func BenchmarkBootstrap100(b *testing.B) {
	for b.Loop() {
		nodes := startCluster(b, 100, nil)
		b.StopTimer()
		for _, n := range nodes {
			n.Close()
		}
		b.StartTimer()
	}
}

// BenchmarkGetRecord100 measures one GetRecord on a 100-node loopback
// cluster, returning at the first valid answer (GetGrace 1 ns).
func BenchmarkGetRecord100(b *testing.B) {
	nodes := startCluster(b, 100, func(i int, c *Config) { c.GetGrace = time.Nanosecond })
	ctx := context.Background()
	sp := signPacket(testKey(12), 1, []byte("bench"))
	if err := nodes[0].PutRecord(ctx, sp); err != nil {
		b.Fatal(err)
	}
	queried := 0
	for b.Loop() {
		_, st, err := nodes[1+rand.IntN(99)].GetRecord(ctx, sp.PublicKey)
		if err != nil {
			b.Fatal(err)
		}
		queried += st.Queried
	}
	b.ReportMetric(float64(queried)/float64(b.N), "queried/op")
}

// BenchmarkFindPeers100 measures a full FindPeers traversal on a 100-node
// loopback cluster where 20 nodes announced.
func BenchmarkFindPeers100(b *testing.B) {
	nodes := startCluster(b, 100, nil)
	ctx := context.Background()
	var s [20]byte
	s[0] = 9
	for _, n := range nodes[80:] {
		if err := n.Announce(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	found := 0
	for b.Loop() {
		ch, err := nodes[rand.IntN(80)].FindPeers(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		found += len(collect(ch))
	}
	b.ReportMetric(float64(found)/float64(b.N), "peers/op")
}
