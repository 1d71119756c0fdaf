package network_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation/netsim"
)

// envInt reads a positive integer from the environment, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestPublishLookupUnderChurn is the churn target of the discovery issue,
// small by default: a DHT of RPE_CHURN_NODES nodes (default 60) over netsim
// with a one-way latency drawn per host from 10-150 ms (20-300 ms a path)
// and 2 % loss per link; after they joined, half of them leave (their
// entries stay in the others' tables). Then RPE_CHURN_TRIALS times (default
// 4) a fresh node publishes as `rpe publish` does (read the record, put the
// next seq; 10 s and 30 s budgets) and another fresh node looks it up as
// `rpe status` does (15 s), both bootstrapping from the first node and
// three random original nodes, dead or not, with production query timeouts.
// Every trial must succeed and find the seq just put. Figures are on the
// virtual clock (testing/synctest). The documented run:
//
//	RPE_CHURN_NODES=300 RPE_CHURN_TRIALS=50 go test -run TestPublishLookupUnderChurn -v ./network
func TestPublishLookupUnderChurn(t *testing.T) {
	if raceEnabled {
		t.Skip("synctest under -race aborts in the race runtime (golang/go#78156)")
	}
	count, trials := envInt("RPE_CHURN_NODES", 60), envInt("RPE_CHURN_TRIALS", 4)
	synctest.Test(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		sim, err := netsim.New(netsim.Config{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // virtual
		defer cancel()

		var all []*network.Node
		defer func() {
			var wg sync.WaitGroup
			for _, n := range all {
				wg.Go(func() { n.Close() })
			}
			wg.Wait()
		}()
		newNode := func(boot []string) *network.Node {
			t.Helper()
			lat := time.Duration(10+rng.IntN(141)) * time.Millisecond
			h, err := sim.AddHost(netsim.Link{Latency: lat, Loss: 0.02})
			if err != nil {
				t.Fatal(err)
			}
			dc, err := h.ListenPacket(6881)
			if err != nil {
				t.Fatal(err)
			}
			qc, err := h.ListenPacket(0)
			if err != nil {
				t.Fatal(err)
			}
			cfg := network.Config{DHTConn: dc, QUICConn: qc, Bootstrap: boot, NoBootstrap: boot == nil}
			var id [20]byte
			for j := range id {
				id[j] = byte(rng.Uint32())
			}
			cfg.NodeID = &id
			n, err := network.New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, n)
			return n
		}
		nodes := []*network.Node{newNode(nil)}
		bootOf := func() []string {
			b := []string{nodes[0].DHTAddr().String()}
			for range min(len(nodes)-1, 3) {
				b = append(b, nodes[1+rng.IntN(len(nodes)-1)].DHTAddr().String())
			}
			return b
		}
		for len(nodes) < count {
			nodes = append(nodes, newNode(bootOf()))
		}
		for lo := 1; lo < count; lo += 30 {
			var wg sync.WaitGroup
			for _, n := range nodes[lo:min(lo+30, count)] {
				wg.Go(func() { n.Bootstrap(ctx) })
			}
			wg.Wait()
		}
		nodes[0].Bootstrap(ctx)
		// Half leave; their entries stay in the others' tables.
		left := 0
		for _, i := range rng.Perm(count - 1)[:(count-1)/2] {
			nodes[1+i].Close()
			left++
		}

		var seed [32]byte
		seed[0] = 9
		priv := ed25519.NewKeyFromSeed(seed[:])
		pub := release.PublicKeyOf(priv)
		var pubLat, getLat []time.Duration
		ok := 0
		for trial := range trials {
			seq := int64(1_700_000_000_000_000 + trial)
			sp := &release.SignedPacket{PublicKey: pub, Seq: seq, Packet: []byte("churn record " + strconv.Itoa(trial))}
			copy(sp.Sig[:], ed25519.Sign(priv, release.SignableBytes(sp.Seq, sp.Packet)))

			p := newNode(bootOf())
			start := time.Now()
			p.Join()
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, err := p.GetRecord(rctx, pub)
			rcancel()
			if err != nil && !errors.Is(err, network.ErrNotFound) {
				t.Errorf("trial %d: publish: read current record: %v", trial, err)
			}
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			err = p.PutRecord(pctx, sp)
			pcancel()
			pubLat = append(pubLat, time.Since(start))
			p.Close()
			if err != nil {
				t.Errorf("trial %d: put: %v", trial, err)
				continue
			}

			l := newNode(bootOf())
			start = time.Now()
			l.Join()
			gctx, gcancel := context.WithTimeout(ctx, 15*time.Second)
			got, st, err := l.GetRecord(gctx, pub)
			gcancel()
			getLat = append(getLat, time.Since(start))
			l.Close()
			switch {
			case err != nil:
				t.Errorf("trial %d: lookup: %v (%+v)", trial, err, st)
			case got.Seq != seq:
				t.Errorf("trial %d: lookup found seq %d, want %d", trial, got.Seq, seq)
			default:
				ok++
			}
		}
		pct := func(d []time.Duration, q float64) time.Duration {
			s := slices.Clone(d)
			slices.Sort(s)
			return s[min(len(s)-1, int(q*float64(len(s))))]
		}
		c := sim.Counters()
		t.Logf("%d nodes, %d left; %d/%d trials succeeded; publish p50 %v p99 %v max %v; lookup p50 %v p99 %v max %v (virtual); %d packets, %d dropped",
			count, left, ok, trials, pct(pubLat, .5), pct(pubLat, .99), slices.Max(pubLat),
			pct(getLat, .5), pct(getLat, .99), slices.Max(getLat), c.PacketsSent, c.PacketsDropped)
	})
}
