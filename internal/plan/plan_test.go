package plan

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rpe-project/engine/wire"
)

var t0 = time.Unix(1_000_000, 0)

func pid(b byte) wire.NodeID { return wire.NodeID{b} }

// bits returns a bitfield of n chunks with the given ones set.
func bits(n int, set ...int) []byte {
	bf := make([]byte, (n+7)/8)
	for _, i := range set {
		bf[i/8] |= 0x80 >> (i % 8)
	}
	return bf
}

func newState(n int, cfg Config) *State {
	cfg.Chunks = n
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	if cfg.RandomFirst == 0 {
		cfg.RandomFirst = -1 // rarest first from the start unless a case says
	}
	return New(cfg, nil)
}

// indices returns the chunks of the requests to peer p.
func indices(reqs []Request, p wire.NodeID) []int {
	var out []int
	for _, r := range reqs {
		if r.Peer == p {
			out = append(out, r.Index)
		}
	}
	slices.Sort(out)
	return out
}

func TestRarestFirst(t *testing.T) {
	// Chunk 3 is held by one peer, chunks 0-2 by three: the peer holding
	// everything is asked for 3 first.
	for _, tc := range []struct {
		name    string
		perPeer int
		want    []int
	}{
		{"one slot takes the rarest", 1, []int{3}},
		{"two slots take the rarest and one more", 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(4, Config{PerPeer: tc.perPeer})
			a, b, c := pid(1), pid(2), pid(3)
			for _, p := range []wire.NodeID{a, b, c} {
				s.AddPeer(p)
			}
			s.Bitfield(a, bits(4, 0, 1, 2, 3), false)
			s.Bitfield(b, bits(4, 0, 1, 2), false)
			s.Bitfield(c, bits(4, 0, 1, 2), false)
			if s.Availability(3) != 1 || s.Availability(0) != 3 {
				t.Fatalf("availability %d, %d; want 1, 3", s.Availability(3), s.Availability(0))
			}
			got := s.Plan(t0)
			ia := indices(got, a)
			if !slices.Contains(ia, 3) {
				t.Fatalf("peer holding the rarest chunk asked for %v, want 3 among them", ia)
			}
			if tc.want != nil && !slices.Equal(ia, tc.want) {
				t.Fatalf("asked %v, want %v", ia, tc.want)
			}
			// No chunk is asked twice outside the endgame.
			seen := map[int]bool{}
			for _, r := range got {
				if seen[r.Index] {
					t.Fatalf("chunk %d asked twice in %v", r.Index, got)
				}
				seen[r.Index] = true
			}
		})
	}
}

func TestHaveMovesRarity(t *testing.T) {
	s := newState(3, Config{PerPeer: 1})
	a, b := pid(1), pid(2)
	s.AddPeer(a)
	s.AddPeer(b)
	s.Bitfield(a, bits(3, 0, 1, 2), false)
	s.Bitfield(b, bits(3, 0, 2), false)
	s.Have(b, 1) // now 0, 1, 2 all held by two
	s.Have(b, 1) // a repeated Have changes nothing
	for i := range 3 {
		if s.Availability(i) != 2 {
			t.Fatalf("chunk %d availability %d, want 2", i, s.Availability(i))
		}
	}
	s.RemovePeer(b)
	for i := range 3 {
		if s.Availability(i) != 1 {
			t.Fatalf("after the peer left, chunk %d availability %d, want 1", i, s.Availability(i))
		}
	}
}

func TestRandomFirst(t *testing.T) {
	// With every chunk equally rare, a fresh node's first pick is spread
	// over the chunks across random sources (not always the same one).
	picked := map[int]int{}
	for seed := range uint64(40) {
		s := New(Config{Chunks: 64, PerPeer: 1, RandomFirst: 4, Rand: rand.New(rand.NewPCG(seed, 7))}, nil)
		s.AddPeer(pid(1))
		s.Bitfield(pid(1), nil, true)
		got := s.Plan(t0)
		if len(got) != 1 {
			t.Fatalf("seed %d: %d requests, want 1", seed, len(got))
		}
		picked[got[0].Index]++
	}
	if len(picked) < 10 {
		t.Fatalf("40 fresh nodes picked only %d distinct first chunks: %v", len(picked), picked)
	}
}

func TestSeedAskedAtFullUse(t *testing.T) {
	// A seed is asked even for chunks a partial peer holds (it must never
	// idle while chunks are missing), up to SeedPerPeer, rarest first.
	s := newState(4, Config{PerPeer: 4, SeedPerPeer: 2})
	seed, part := pid(1), pid(2)
	s.AddPeer(part)
	s.AddPeer(seed)
	s.Bitfield(part, bits(4, 0, 1, 2, 3), false)
	s.Bitfield(seed, nil, true)
	got := s.Plan(t0)
	if n := len(indices(got, seed)); n != 0 {
		// The partial peer came first and took all four.
		t.Fatalf("seed asked %d with nothing left", n)
	}
	s = newState(6, Config{PerPeer: 2, SeedPerPeer: 2})
	s.AddPeer(part)
	s.AddPeer(seed)
	s.Bitfield(part, bits(6, 0, 1, 2, 3), false)
	s.Bitfield(seed, nil, true)
	got = s.Plan(t0)
	is := indices(got, seed)
	if len(is) != 2 {
		t.Fatalf("seed asked for %v, want 2 chunks", is)
	}
	// Chunks 4 and 5 only the seed has: availability 0, so rarest.
	if !slices.Equal(is, []int{4, 5}) {
		t.Fatalf("seed asked for %v, want the chunks nobody else has, [4 5]", is)
	}
}

// TestPipelineSizedToRate drives the plan against a model peer: it
// answers requests one after another at rate bytes per second, each
// answer reaching us rtt after the request left plus its time on the link.
// The pipeline must fill the link (not a fixed depth) and stay within
// one request plus twice the latency's worth (not grow to PerPeer).
func TestPipelineSizedToRate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chunk    int
		rate     float64 // bytes per second
		rtt      time.Duration
		maxDepth int // deepest pipeline allowed once settled
	}{
		{"loopback-like: 256 KiB chunks, 100 MiB/s, 4ms", 256 << 10, 100 << 20, 4 * time.Millisecond, 6},
		{"long path: 256 KiB chunks, 100 MiB/s, 20ms", 256 << 10, 100 << 20, 20 * time.Millisecond, 20},
		{"swarm node: 16 KiB chunks, 512 KiB/s, 40ms", 16 << 10, 512 << 10, 40 * time.Millisecond, 6},
		{"slow peer: 256 KiB chunks, 64 KiB/s, 40ms", 256 << 10, 64 << 10, 40 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4096
			s := newState(n, Config{PerPeer: 32, ChunkSize: tc.chunk})
			p := pid(1)
			s.AddPeer(p)
			s.Bitfield(p, nil, true)
			per := time.Duration(float64(tc.chunk) / tc.rate * float64(time.Second))
			type answer struct {
				i  int
				at time.Time
			}
			var queue []answer // in the order they arrive
			now, linkFree := t0, t0
			ask := func() {
				for _, r := range s.Plan(now) {
					// The request reaches the peer after half the round
					// trip, waits for the link, and the answer takes its
					// time on the link and the other half.
					start := now.Add(tc.rtt / 2)
					if linkFree.After(start) {
						start = linkFree
					}
					linkFree = start.Add(per)
					queue = append(queue, answer{r.Index, linkFree.Add(tc.rtt / 2)})
				}
			}
			ask()
			var got int
			var settled time.Time
			depth := 0
			for got < n && len(queue) > 0 {
				a := queue[0]
				queue = queue[1:]
				now = a.at
				s.Arrived(p, a.i, tc.chunk, now)
				s.Got(a.i)
				got++
				if got == n/2 {
					settled = now
				}
				if got > n/2 {
					depth = max(depth, len(queue)+1)
				}
				ask()
			}
			if got != n {
				t.Fatalf("got %d of %d chunks; the pipeline ran dry", got, n)
			}
			// Over the second half, the link must be nearly full.
			ideal := time.Duration(n/2) * per
			use := ideal.Seconds() / now.Sub(settled).Seconds()
			t.Logf("link use %.2f, deepest pipeline %d (bandwidth-delay product %.1f chunks)", use, depth, tc.rate*tc.rtt.Seconds()/float64(tc.chunk))
			if use < 0.9 {
				t.Errorf("link use %.2f in the second half, want >= 0.9", use)
			}
			if depth > tc.maxDepth {
				t.Errorf("pipeline %d deep, want at most %d", depth, tc.maxDepth)
			}
		})
	}
	t.Run("unmeasured takes InitialDepth", func(t *testing.T) {
		s := newState(64, Config{PerPeer: 8, InitialDepth: 3})
		s.AddPeer(pid(1))
		s.Bitfield(pid(1), nil, true)
		if got := len(s.Plan(t0)); got != 3 {
			t.Fatalf("%d requests in flight, want 3", got)
		}
	})
	t.Run("capped at PerPeer", func(t *testing.T) {
		s := newState(64, Config{PerPeer: 5, ChunkSize: 1 << 10})
		p := pid(1)
		s.AddPeer(p)
		s.Bitfield(p, nil, true)
		now := t0
		for range 20 { // a fast peer, 1 KiB per 10ms but 1 s round trips
			reqs := s.Plan(now)
			now = now.Add(time.Second)
			for _, r := range reqs {
				s.Arrived(p, r.Index, 1<<10, now)
				s.Got(r.Index)
			}
		}
		if d := s.Depth(p); d != 5 {
			t.Fatalf("depth %d, want PerPeer 5", d)
		}
	})
}

func TestEndgameAndCancel(t *testing.T) {
	s := newState(2, Config{PerPeer: 1, EndgameAfter: time.Second})
	a, b, c := pid(1), pid(2), pid(3)
	for _, p := range []wire.NodeID{a, b, c} {
		s.AddPeer(p)
		s.Bitfield(p, nil, true)
	}
	s.cfg.SeedPerPeer = 1
	first := s.Plan(t0)
	if len(first) != 2 {
		t.Fatalf("first plan %v, want both chunks asked once", first)
	}
	if more := s.Plan(t0.Add(500 * time.Millisecond)); len(more) != 0 {
		t.Fatalf("endgame began too soon: %v", more)
	}
	idle := map[wire.NodeID]bool{a: true, b: true, c: true}
	for _, r := range first {
		delete(idle, r.Peer)
	}
	dup := s.Plan(t0.Add(2 * time.Second))
	if len(dup) != 1 || !idle[dup[0].Peer] {
		t.Fatalf("endgame asked %v, want one duplicate from the idle peer", dup)
	}
	// A third copy is never asked.
	if more := s.Plan(t0.Add(3 * time.Second)); len(more) != 0 {
		t.Fatalf("asked a third time: %v", more)
	}
	// The first copy arrives: the other request is cancelled.
	var from wire.NodeID
	for _, r := range first {
		if r.Index == dup[0].Index {
			from = r.Peer
		}
	}
	s.Arrived(from, dup[0].Index, 1, t0.Add(3*time.Second))
	cancel := s.Got(dup[0].Index)
	if len(cancel) != 1 || cancel[0] != dup[0] {
		t.Fatalf("cancels %v, want %v", cancel, dup)
	}
	if s.Left() != 1 {
		t.Fatalf("left %d, want 1", s.Left())
	}
}

func TestLiarLosesClaims(t *testing.T) {
	s := newState(4, Config{PerPeer: 1})
	liar, honest := pid(1), pid(2)
	s.AddPeer(liar)
	s.Bitfield(liar, nil, true) // claims everything
	r := s.Plan(t0)
	if len(r) != 1 {
		t.Fatalf("plan %v", r)
	}
	if n := s.Fail(liar, r[0].Index, Refused, t0); n != 1 {
		t.Fatalf("false claims %d, want 1", n)
	}
	if s.Holds(liar, r[0].Index) {
		t.Fatal("a refused claim still counts")
	}
	// Not asked again for it, even after the retry time.
	for _, q := range s.Plan(t0.Add(time.Hour)) {
		if q.Index == r[0].Index {
			t.Fatal("liar asked again for the chunk it refused")
		}
	}
	// An honest partial peer's chunk that the liar refused is rarer than
	// one the liar did not lie about.
	s.AddPeer(honest)
	s.Bitfield(honest, bits(4, 0, 1, 2, 3), false)
	if s.Availability(r[0].Index) != 1 {
		t.Fatalf("availability %d, want 1", s.Availability(r[0].Index))
	}
	// A new Have is believed again.
	s.Have(liar, r[0].Index)
	if !s.Holds(liar, r[0].Index) {
		t.Fatal("a fresh Have is not believed")
	}
	// Every refused claim counts.
	for k := 0; k < 3; k++ {
		i := (r[0].Index + 1 + k) % 4
		if n := s.Fail(liar, i, Refused, t0); n != 2+k {
			t.Fatalf("false claims %d, want %d", n, 2+k)
		}
	}
}

func TestBusyBacksOff(t *testing.T) {
	s := newState(4, Config{PerPeer: 1, BusyBackoff: time.Second})
	p := pid(1)
	s.AddPeer(p)
	s.Bitfield(p, nil, true)
	r := s.Plan(t0)
	s.Fail(p, r[0].Index, Busy, t0)
	if got := s.Plan(t0.Add(500 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("busy peer asked again at once: %v", got)
	}
	if got := s.Plan(t0.Add(2 * time.Second)); len(got) != 1 {
		t.Fatalf("busy peer not asked after the back-off: %v", got)
	}
}

func TestLostChunkWantedAgain(t *testing.T) {
	s := newState(2, Config{PerPeer: 2})
	p := pid(1)
	s.AddPeer(p)
	s.Bitfield(p, bits(2, 0, 1), false)
	for _, r := range s.Plan(t0) {
		s.Arrived(p, r.Index, 1, t0.Add(time.Second))
		s.Got(r.Index)
	}
	if s.Left() != 0 {
		t.Fatalf("left %d", s.Left())
	}
	s.Lost(1)
	if got := s.Plan(t0); len(got) != 1 || got[0].Index != 1 {
		t.Fatalf("after a failed check, plan %v, want chunk 1", got)
	}
}

// BenchmarkPlan: 512K chunks, 50 peers each holding a random half; one op
// is a thousand rounds of a download's traffic (a Have from every peer, an
// arrival for every request, a Plan). The setup (50 full bitfields, 26M
// bits) is timed apart, as BenchmarkPlanSetup.
func BenchmarkPlan(b *testing.B) { benchPlan(b, false) }

// BenchmarkPlanSetup times New and the 50 bitfields of BenchmarkPlan.
func BenchmarkPlanSetup(b *testing.B) { benchPlan(b, true) }

func benchPlan(b *testing.B, setupOnly bool) {
	const n, peers = 512 << 10, 50
	rng := rand.New(rand.NewPCG(3, 4))
	bfs := make([][]byte, peers)
	for k := range bfs {
		bfs[k] = make([]byte, (n+7)/8)
		for i := range bfs[k] {
			bfs[k][i] = byte(rng.Uint32())
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if !setupOnly {
			b.StopTimer()
		}
		s := New(Config{Chunks: n, Rand: rand.New(rand.NewPCG(5, 6))}, nil)
		for k := range peers {
			s.AddPeer(pid(byte(k + 1)))
			s.Bitfield(pid(byte(k+1)), bfs[k], false)
		}
		if setupOnly {
			continue
		}
		b.StartTimer()
		now := t0
		// A thousand rounds: each a Have from every peer, an arrival for
		// every request and a Plan.
		reqs := s.Plan(now)
		for round := range 1000 {
			now = now.Add(10 * time.Millisecond)
			for k := range peers {
				s.Have(pid(byte(k+1)), (round*peers+k*7919)%n)
			}
			for _, r := range reqs {
				s.Arrived(r.Peer, r.Index, 256<<10, now)
				s.Got(r.Index)
			}
			reqs = s.Plan(now)
		}
	}
}
