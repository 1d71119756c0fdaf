package network

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// testConfig is a hermetic config: loopback sockets, a short resend delay,
// a quiet logger (debug logs with RPE_TEST_LOG=1).
func testConfig(t testing.TB) Config {
	t.Helper()
	l := slog.New(slog.DiscardHandler)
	if os.Getenv("RPE_TEST_LOG") != "" {
		l = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return Config{
		ListenDHT:  "127.0.0.1:0",
		ListenQUIC: "127.0.0.1:0",
		// Long enough that a loaded machine's scheduling delays are not
		// taken for losses (loopback loses nothing).
		QueryResendDelay: time.Second,
		// Hundreds of nodes on one loopback answer bursts the production
		// limiter (250/s, burst 50) would drop; the limiter has its own test.
		SendRate:  5000,
		SendBurst: 500,
		GetGrace:  100 * time.Millisecond,
		Logger:    l,
	}
}

// newTestNode starts a node and closes it at the end of the test.
func newTestNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startCluster starts count nodes on loopback: the first alone, every other
// bootstrapping from the first and up to three random earlier nodes. mod
// may adjust each node's config.
func startCluster(t testing.TB, count int, mod func(i int, c *Config)) []*Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes := make([]*Node, count)
	for i := range nodes {
		cfg := testConfig(t)
		if i == 0 {
			cfg.NoBootstrap = true
		} else {
			cfg.Bootstrap = []string{nodes[0].DHTAddr().String()}
			for range min(i-1, 3) {
				cfg.Bootstrap = append(cfg.Bootstrap, nodes[1+rand.IntN(i-1)].DHTAddr().String())
			}
		}
		if mod != nil {
			mod(i, &cfg)
		}
		nodes[i] = newTestNode(t, cfg)
	}
	// Bootstrap in waves of 10, so early nodes are in tables before later
	// nodes join, as in a network that grows.
	for lo := 1; lo < count; lo += 10 {
		var wg sync.WaitGroup
		for i := lo; i < min(lo+10, count); i++ {
			wg.Go(func() {
				if err := nodes[i].Bootstrap(ctx); err != nil {
					t.Errorf("node %d bootstrap: %v", i, err)
				}
			})
		}
		wg.Wait()
	}
	if count > 1 {
		if err := nodes[0].Bootstrap(ctx); err != nil {
			t.Errorf("node 0 bootstrap: %v", err)
		}
	}
	return nodes
}

// testKey is a deterministic publisher key.
func testKey(seed byte) ed25519.PrivateKey {
	var s [ed25519.SeedSize]byte
	s[0] = seed
	return ed25519.NewKeyFromSeed(s[:])
}

// signPacket builds a pkarr-style signed packet over an opaque payload.
func signPacket(priv ed25519.PrivateKey, seq int64, packet []byte) *release.SignedPacket {
	sp := &release.SignedPacket{Seq: seq, Packet: packet}
	copy(sp.PublicKey[:], priv.Public().(ed25519.PublicKey))
	copy(sp.Sig[:], ed25519.Sign(priv, release.SignableBytes(seq, packet)))
	return sp
}

// collect reads a FindPeers channel to its end.
func collect(ch <-chan netip.AddrPort) map[netip.AddrPort]bool {
	got := make(map[netip.AddrPort]bool)
	for ap := range ch {
		got[ap] = true
	}
	return got
}

// checkNoLeak fails if the goroutine count does not fall back to before
// (plus slack) within a few seconds after everything is closed.
func checkNoLeak(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := runtime.NumGoroutine()
		if now <= before+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, %d before:\n%s", now, before, buf)
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
}
