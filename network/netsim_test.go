package network_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation/netsim"
)

// TestNetsim300Nodes runs 300 complete nodes (DHT and QUIC sockets) over the
// simulated network in virtual time, 10 ms one-way link latency and 1 % loss
// per link: one puts a record and 10 random others get it, 20 announce a
// swarm and 10 others find at least 90 % of them. Figures are on the virtual
// clock, so they measure the protocol, not this machine.
func TestNetsim300Nodes(t *testing.T) {
	if testing.Short() {
		t.Skip("300 nodes")
	}
	if raceEnabled {
		t.Skip("synctest under -race aborts in the race runtime (golang/go#78156)")
	}
	synctest.Test(t, func(t *testing.T) {
		const getters, announcers, finders = 10, 20, 10
		const count = 300
		rng := rand.New(rand.NewPCG(1, 2))
		sim, err := netsim.New(netsim.Config{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // virtual
		defer cancel()

		nodes := make([]*network.Node, count)
		defer func() {
			var wg sync.WaitGroup
			for _, n := range nodes {
				if n != nil {
					wg.Go(func() { n.Close() })
				}
			}
			wg.Wait()
		}()
		for i := range nodes {
			h, err := sim.AddHost(netsim.Link{Latency: 10 * time.Millisecond, Loss: 0.01})
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
			cfg := network.Config{
				DHTConn: dc, QUICConn: qc,
				QueryResendDelay: 200 * time.Millisecond,
				GetGrace:         200 * time.Millisecond,
				SendRate:         5000, SendBurst: 500,
			}
			var id [20]byte
			for j := range id {
				id[j] = byte(rng.Uint32())
			}
			cfg.NodeID = &id
			if i == 0 {
				cfg.NoBootstrap = true
			} else {
				cfg.Bootstrap = []string{nodes[0].DHTAddr().String()}
				for range min(i-1, 3) {
					cfg.Bootstrap = append(cfg.Bootstrap, nodes[1+rng.IntN(i-1)].DHTAddr().String())
				}
			}
			if nodes[i], err = network.New(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		for lo := 1; lo < count; lo += 30 {
			var wg sync.WaitGroup
			for _, n := range nodes[lo:min(lo+30, count)] {
				wg.Go(func() {
					if err := n.Bootstrap(ctx); err != nil {
						t.Errorf("bootstrap %v: %v", n.DHTAddr(), err)
					}
				})
			}
			wg.Wait()
		}
		if err := nodes[0].Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		boot := time.Since(start)
		sizes := make([]int, count)
		for i, n := range nodes {
			sizes[i] = n.TableSize()
		}
		slices.Sort(sizes)
		t.Logf("%d nodes bootstrapped in %v virtual; table sizes min %d, median %d", count, boot, sizes[0], sizes[count/2])

		perm := rng.Perm(count)
		var seed [32]byte
		seed[0] = 42
		priv := ed25519.NewKeyFromSeed(seed[:])
		sp := &release.SignedPacket{Seq: 1_700_000_000_000_000, Packet: []byte("netsim record")}
		copy(sp.PublicKey[:], priv.Public().(ed25519.PublicKey))
		copy(sp.Sig[:], ed25519.Sign(priv, release.SignableBytes(sp.Seq, sp.Packet)))
		start = time.Now()
		if err := nodes[perm[0]].PutRecord(ctx, sp); err != nil {
			t.Fatalf("put: %v", err)
		}
		t.Logf("put in %v virtual", time.Since(start))

		var mu sync.Mutex
		var lat, first []time.Duration
		var wg sync.WaitGroup
		for _, i := range perm[1 : 1+getters] {
			wg.Go(func() {
				got, st, err := nodes[i].GetRecord(ctx, sp.PublicKey)
				if err != nil {
					t.Errorf("get from node %d: %v (%+v)", i, err, st)
					return
				}
				if got.Seq != sp.Seq || string(got.Packet) != string(sp.Packet) {
					t.Errorf("node %d got seq %d %q", i, got.Seq, got.Packet)
				}
				mu.Lock()
				lat = append(lat, st.Elapsed)
				first = append(first, st.FirstValid)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(lat)
		slices.Sort(first)
		if len(lat) > 0 {
			t.Logf("gets %d/%d: first valid answer p50 %v max %v; returned (after %v grace) p50 %v max %v; virtual",
				len(lat), getters, first[len(first)/2], first[len(first)-1], 200*time.Millisecond, lat[len(lat)/2], lat[len(lat)-1])
		}

		var swarm release.SwarmID
		copy(swarm[:], fmt.Sprintf("netsim swarm %7d", count))
		want := make(map[netip.AddrPort]bool)
		start = time.Now()
		for _, i := range perm[:announcers] {
			want[nodes[i].QUICAddr()] = true
			wg.Go(func() {
				if err := nodes[i].Announce(ctx, swarm); err != nil {
					t.Errorf("announce from node %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		t.Logf("%d announces in %v virtual", announcers, time.Since(start))
		worst := announcers
		for _, i := range perm[announcers : announcers+finders] {
			wg.Go(func() {
				ch, err := nodes[i].FindPeers(ctx, swarm)
				if err != nil {
					t.Errorf("find peers from node %d: %v", i, err)
					return
				}
				found := 0
				for ap := range ch {
					if want[ap] {
						found++
					}
				}
				mu.Lock()
				worst = min(worst, found)
				mu.Unlock()
				if found*10 < announcers*9 {
					t.Errorf("node %d found %d of %d announcers", i, found, announcers)
				}
			})
		}
		wg.Wait()
		c := sim.Counters()
		t.Logf("find_peers: worst finder saw %d/%d; network: %d packets, %d dropped", worst, announcers, c.PacketsSent, c.PacketsDropped)
	})
}
