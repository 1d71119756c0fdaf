package swarm

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// tp is the test peer asking for chunk i: one per chunk, so that the
// per-peer share of slots stays out of the way of these tests.
func tp(i int) wire.NodeID { return wire.NodeID{byte(i), 0xee} }

// queue starts one goroutine per request, in this order, for chunks of
// release id while every slot of u is taken; each goroutine sends its chunk
// on granted once it has a slot (or -1-chunk when refused). It returns once
// all of them wait, so the queue order is the order given.
func queue(t *testing.T, u *uploads, id release.ManifestID, n int, seed bool, granted chan<- int, chunks ...int) {
	t.Helper()
	for _, i := range chunks {
		go func() {
			if u.acquire(context.Background(), tp(i), id, i, n, seed, time.Minute) {
				granted <- i
			} else {
				granted <- -1 - i
			}
		}()
		synctest.Wait() // this request waits before the next one arrives
	}
}

// wantSlot asks u for a slot (acquire) and fails the test unless the
// answer is want; format and args say what the request was about.
func wantSlot(t *testing.T, want bool, u *uploads, id release.ManifestID, i, n int, seed bool, wait time.Duration, format string, args ...any) {
	t.Helper()
	if got := u.acquire(t.Context(), tp(i), id, i, n, seed, wait); got != want {
		t.Fatalf("slot for chunk %d: got %v, want %v: "+format, append([]any{i, got, want}, args...)...)
	}
}

// TestUploadsCoverEveryChunkFirst: with requests queued so that first come,
// first served would send chunks 1 and 2 twice before chunk 3 once, a freed
// slot goes to a chunk never sent before any chunk goes out a second time.
func TestUploadsCoverEveryChunkFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUploads(1)
		id := release.ManifestID{1}
		const n = 4
		wantSlot(t, true, u, id, 0, n, false, time.Minute, "the free slot was not taken")
		granted := make(chan int, 16)
		queue(t, u, id, n, false, granted, 1, 1, 2, 2, 0, 3, 3)
		var order []int
		finished := 0
		for len(order) < 7 {
			u.finish(tp(finished), id, finished, true)
			finished = <-granted
			order = append(order, finished)
		}
		u.finish(tp(finished), id, finished, true)
		// Chunk 0 was sent first, so 1, 2 and 3 (sent never) go before any
		// repeat; then the second requests for 1 and 2 (0 was sent as
		// often), then 0 and 3 (sent once each) in arrival order.
		want := []int{1, 2, 3, 1, 2, 0, 3}
		for k := range want {
			if order[k] != want[k] {
				t.Fatalf("grant order %v, want %v", order, want)
			}
		}
		if u.free != 1 || len(u.waiting) != 0 {
			t.Fatalf("free %d, waiting %d after all finished; want 1, 0", u.free, len(u.waiting))
		}
	})
}

// TestUploadsHeldChunkWaits: a chunk that connected peers announced ranks
// behind one nobody holds, and an answer cut off (finished unsent) does not
// count as a copy.
func TestUploadsHeldChunkWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUploads(1)
		id := release.ManifestID{2}
		const n = 3
		u.holders(id, n, []int{1}, +2)
		wantSlot(t, true, u, id, 2, n, false, time.Minute, "the free slot was not taken")
		granted := make(chan int, 4)
		queue(t, u, id, n, false, granted, 1, 0, 2)
		// Chunk 2's answer was cut off: it still has no copy outside, so it
		// goes with chunk 0, before chunk 1 that two peers hold; among 0
		// and 2, chunk 0 came first.
		u.finish(tp(2), id, 2, false)
		var order []int
		for range 3 {
			i := <-granted
			order = append(order, i)
			u.finish(tp(i), id, i, true)
		}
		if want := []int{0, 2, 1}; order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
			t.Fatalf("grant order %v, want %v", order, want)
		}
		// The peers go away: chunk 1 is then held by nobody again.
		u.holders(id, n, []int{1}, -2)
		c := u.rels[id]
		if cp := c.copies(1, time.Now()); cp != 1 || c.sent[2] != 1 {
			t.Fatalf("copies of chunk 1 = %d, sent of chunk 2 = %d; want 1, 1", cp, c.sent[2])
		}
	})
}

// TestUnannouncedSendExpires: an answer written in full counts as a copy
// only until haveWait has passed without the receiver announcing the chunk
// (it may have stopped before checking it); the chunk is then uncovered
// again and a seed refuses repeats of other chunks until it is sent again.
func TestUnannouncedSendExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUploads(1)
		id := release.ManifestID{7}
		const n = 2
		for i := range n {
			wantSlot(t, true, u, id, i, n, true, 0, "chunk %d refused", i)
			u.finish(tp(i), id, i, true)
		}
		u.holders(id, n, []int{1}, +1) // chunk 1 was announced, chunk 0 not
		c := u.rels[id]
		if cp := c.copies(0, time.Now()); cp != 1 {
			t.Fatalf("chunk 0 has %d copies right after its answer, want 1", cp)
		}
		time.Sleep(haveWait)
		if cp := c.copies(0, time.Now()); cp != 0 {
			t.Fatalf("chunk 0 has %d copies %v after an answer nobody announced, want 0", cp, haveWait)
		}
		// Chunk 0 is asked for again (the request waits behind chunk 1's
		// answer, then gives up): a repeat of chunk 1 is refused until
		// chunk 0 is out again.
		wantSlot(t, true, u, id, 1, n, true, 0, "chunk 1 refused while nothing else is in demand")
		wantSlot(t, false, u, id, 0, n, true, 100*time.Millisecond, "a request got a slot that was taken")
		u.finish(tp(1), id, 1, true)
		wantSlot(t, false, u, id, 1, n, true, 0, "chunk 1 served again while chunk 0, asked for, has no copy")
		wantSlot(t, true, u, id, 0, n, true, 0, "chunk 0 refused")
		u.finish(tp(0), id, 0, true)
	})
}

// TestUploadsWaitEnds: a request that gets no slot in time is refused and
// leaves the queue, and the slot, once freed, is free again.
func TestUploadsWaitEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUploads(1)
		id := release.ManifestID{3}
		wantSlot(t, true, u, id, 0, 2, false, time.Second, "the free slot was not taken")
		start := time.Now()
		wantSlot(t, false, u, id, 1, 2, false, time.Second, "a request got a slot that was taken")
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("waited %v, want the full second", waited)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if u.acquire(ctx, tp(1), id, 1, 2, false, time.Second) {
			t.Fatal("a cancelled request got a slot that was taken")
		}
		if len(u.waiting) != 0 || u.rels[id].queued[1] != 0 {
			t.Fatalf("%d requests still queued", len(u.waiting))
		}
		u.finish(tp(0), id, 0, true)
		wantSlot(t, true, u, id, 1, 2, false, 0, "the freed slot was not taken")
	})
}

// TestSeedTurnRoundRobin: a seed takes a request for a chunk only while it
// has served that chunk at most once more than the least served chunk in
// demand, so a chunk everyone wants is never held back.
func TestSeedTurnRoundRobin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUploads(1)
		id := release.ManifestID{4}
		const n = 4
		// Every chunk is asked for and sent once.
		for i := range n {
			wantSlot(t, true, u, id, i, n, true, 0, "first request for chunk %d refused", i)
			u.finish(tp(i), id, i, true)
		}
		// Chunk 0 twice more (once, and the slack) while 1-3 stay at one.
		for round := range seedSlack + 1 {
			wantSlot(t, true, u, id, 0, n, true, 0, "chunk 0 refused within the slack (round %d)", round)
			u.finish(tp(0), id, 0, true)
		}
		wantSlot(t, false, u, id, 0, n, true, 0, "chunk 0 served again while chunks 1-3 were served less and are in demand")
		// An answer cut off is no turn: chunk 1 stays at one copy.
		wantSlot(t, true, u, id, 1, n, true, 0, "chunk 1 refused")
		u.finish(tp(1), id, 1, false)
		if got := u.rels[id].sent[1]; got != 1 {
			t.Fatalf("chunk 1 sent %d times after a cut-off answer, want 1", got)
		}
		// Later only chunk 0 is wanted: the others drop out of demand.
		time.Sleep(demandWindow + time.Second)
		wantSlot(t, true, u, id, 0, n, true, 0, "chunk 0 refused although no other chunk is in demand")
		u.finish(tp(0), id, 0, true)
	})
}

// TestSeedNoRepeatWhileUncovered: a seed refuses a request for a chunk
// that is out already while a chunk asked for recently has no copy, both
// when the request arrives and when a slot frees.
func TestSeedNoRepeatWhileUncovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUploads(1)
		id := release.ManifestID{6}
		const n = 3
		wantSlot(t, true, u, id, 0, n, true, time.Minute, "the free slot was not taken")
		// Nothing else is in demand: a second request for chunk 0 waits.
		granted := make(chan int, 4)
		queue(t, u, id, n, true, granted, 0)
		// Chunk 1 is asked for, and the request gives up before a slot
		// frees: chunk 1 is in demand with no copy.
		wantSlot(t, false, u, id, 1, n, true, 100*time.Millisecond, "a request got a slot that was taken")
		// The slot frees: the repeat of chunk 0 is refused, not served.
		u.finish(tp(0), id, 0, true)
		if i := <-granted; i != -1 {
			t.Fatalf("got %d from the waiting request for chunk 0, want -1 (refused)", i)
		}
		// A new request for chunk 0 is refused at once; one for chunk 1 is
		// served; then chunk 0 again.
		wantSlot(t, false, u, id, 0, n, true, time.Minute, "chunk 0 served again while chunk 1 is in demand with no copy")
		wantSlot(t, true, u, id, 1, n, true, time.Minute, "chunk 1 refused")
		u.finish(tp(1), id, 1, true)
		wantSlot(t, true, u, id, 0, n, true, time.Minute, "chunk 0 refused once every chunk in demand is out")
		u.finish(tp(0), id, 0, true)
		// Chunk 2 is asked for and gets no slot: a repeat of chunk 1 is
		// refused; once a peer announces chunk 2 (this seed never sent it),
		// chunk 2 counts as out and the repeat is served.
		wantSlot(t, true, u, id, 0, n, true, time.Minute, "the free slot was not taken")
		wantSlot(t, false, u, id, 2, n, true, 100*time.Millisecond, "a request got a slot that was taken")
		u.finish(tp(0), id, 0, true)
		wantSlot(t, false, u, id, 1, n, true, time.Minute, "chunk 1 served again while chunk 2 is in demand with no copy")
		u.holders(id, n, []int{2}, +1)
		wantSlot(t, true, u, id, 1, n, true, time.Minute, "chunk 1 refused although every chunk in demand is out")
		u.finish(tp(1), id, 1, true)
	})
}

// TestSeedCoversSwarm plays a seed with two slots and ten peers that want
// every chunk and ask it, two requests at a time, for random chunks that no
// peer announced yet (as the downloader asks a seed only for chunks its
// other peers lack), each request waiting up to half a second for a slot.
// Whatever the order of requests, the seed never starts a second copy of a
// chunk while a chunk asked for has not gone out once; and every chunk goes
// out within the first n+n/4 answers (16 to 20 of 16 over 300 seeds).
func TestSeedCoversSwarm(t *testing.T) {
	for seed := range uint64(30) {
		synctest.Test(t, func(t *testing.T) {
			const n, peers, slots, perPeer = 16, 10, 2, 2
			const transfer = 62 * time.Millisecond // 64 KiB at 1 MiB/s
			u := newUploads(slots)
			id := release.ManifestID{5}
			rnd := rand.New(rand.NewPCG(seed, 1))
			held := make([]bool, n)  // announced by some peer
			asked := make([]bool, n) // asked for at least once
			active := make([]int32, n)
			var sent []int
			done := make(chan int, peers*perPeer)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			// check looks at the answers started since the last check: a
			// repeat must not start while an asked-for chunk is not out.
			check := func() {
				synctest.Wait()
				u.mu.Lock()
				defer u.mu.Unlock()
				c := u.rels[id]
				for i := range n {
					if c.active[i] > active[i] && c.sent[i]+c.active[i] > 1 {
						for j := range n {
							if asked[j] && c.sent[j]+c.active[j] == 0 {
								t.Errorf("seed %d: second copy of chunk %d started while chunk %d, asked for, has none", seed, i, j)
							}
						}
					}
				}
				copy(active, c.active)
			}
			outstanding := 0
			ask := func() {
				var want []int
				for i := range n {
					if !held[i] {
						want = append(want, i)
					}
				}
				if len(want) == 0 {
					return
				}
				i := want[rnd.IntN(len(want))]
				asked[i] = true
				outstanding++
				go func() {
					if !u.acquire(ctx, tp(i), id, i, n, true, 500*time.Millisecond) {
						time.Sleep(500 * time.Millisecond) // the peer's busy back-off
						done <- -1 - i
						return
					}
					time.Sleep(transfer)
					done <- i
				}()
				check()
			}
			for range peers * perPeer {
				ask()
			}
			for outstanding > 0 {
				i := <-done
				outstanding--
				if i >= 0 {
					u.finish(tp(i), id, i, true)
					check()
					sent = append(sent, i)
					if !held[i] {
						held[i] = true
						u.holders(id, n, []int{i}, +1)
					}
				}
				ask()
			}
			seen := make([]bool, n)
			for _, i := range sent[:min(len(sent), n+n/4)] {
				seen[i] = true
			}
			for i := range n {
				if !seen[i] {
					t.Errorf("seed %d: chunk %d not among the first %d answers %v", seed, i, n+n/4, sent)
				}
			}
		})
	}
}
