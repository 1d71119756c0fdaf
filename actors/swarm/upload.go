package swarm

import (
	"context"
	"sync"
	"time"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// uploads hands out the node's upload slots (Config.MaxUploads chunk
// answers being sent at once, to all peers together) and decides which
// waiting request gets the next free one.
//
// The request whose chunk has the fewest copies outside this node goes
// first. A chunk's copies are estimated from both ends: the connected peers
// that announced holding it (Hello bitfields and Have messages, kept up to
// date by the swarm actor), and the answers this node is sending or sent
// so recently that the receiver may not have announced the chunk yet
// (haveWait). A chunk nobody announced and this node is not sending thus
// jumps every queue, so a seed that has sent about one copy of a release
// has put every chunk into the swarm once, whatever order the requests came
// in. An answer counts as sent only when the wire layer reports it written
// in full (ChunkSent with no error): an answer cut off when
// the node stops or the peer goes away reached nobody; and one written but
// never announced (the receiver stopped before it checked the chunk) stops
// counting after haveWait.
//
// It is shared by the swarm actor and the peer handlers, which run on the
// connections' goroutines, so every field is guarded by mu.
//
// No peer can hold the slots hostage: one peer takes more than perPeer of
// them (half, at least one) only when nobody else waits, has at most
// peerRequests requests holding or waiting for one (more are answered
// busy at once), and a freed slot goes to the waiting peer holding fewest.
// A stalled answer loses its slot within seconds (wire's MinAnswerRate)
// and its peer gets none for slowPenalty. While some peer was penalised so
// within slowPenalty, peers on probation (that never took an answer in
// full) hold at most perPeer slots all together: stallers under fresh
// identities (each costs its slot a few seconds before it is cut) then take
// turns with each other on those, while a downloader that reads keeps the
// others. Without a staller nothing changes the order above.
type uploads struct {
	mu        sync.Mutex
	free      int         // slots not taken
	perPeer   int         // most slots one peer holds
	waiting   []*upWaiter // requests waiting for a slot, in arrival order
	rels      map[release.ManifestID]*chunkCounts
	peers     map[wire.NodeID]*peerUse
	proven    map[wire.NodeID]bool // peers that took an answer in full
	probation int                  // slots held by peers not proven
	lastSlow  time.Time            // when a peer was last penalised
}

// peerUse is one peer's requests holding (active) or waiting for a slot,
// and until when it is refused for having left an answer unread.
type peerUse struct {
	active, queued int
	probation      int // of active, those granted on probation
	slowUntil      time.Time
}

// slowPenalty is how long a peer that took an answer too slowly (wire
// abandoned it below MinAnswerRate) gets no slot: stalling answers costs
// the staller, not the other peers.
const slowPenalty = 30 * time.Second

// peerRequests is how many requests of one peer may hold or wait for a
// slot at once; more are answered busy without waiting.
const peerRequests = 16

func newUploads(slots int) *uploads {
	return &uploads{free: slots, perPeer: max(1, slots/2), rels: map[release.ManifestID]*chunkCounts{}, peers: map[wire.NodeID]*peerUse{},
		proven: map[wire.NodeID]bool{}}
}

// use returns peer's counts, made on first use. The caller holds mu.
func (u *uploads) use(peer wire.NodeID) *peerUse {
	pu := u.peers[peer]
	if pu == nil {
		pu = &peerUse{}
		u.peers[peer] = pu
	}
	return pu
}

// unuse forgets a peer with nothing holding or waiting. The caller holds mu.
func (u *uploads) unuse(peer wire.NodeID, pu *peerUse) {
	if pu.active == 0 && pu.queued == 0 && pu.slowUntil.IsZero() {
		delete(u.peers, peer)
	}
}

// upWaiter is one chunk request waiting for a slot.
type upWaiter struct {
	peer    wire.NodeID
	id      release.ManifestID
	index   int
	seed    bool
	ready   chan struct{} // closed once out of the queue, granted or not
	out     bool          // out of the queue (guarded by mu)
	granted bool          // and given a slot (guarded by mu)
}

// chunkCounts are one release's per-chunk counts.
type chunkCounts struct {
	sent     []int32     // answers written in full
	lastSent []time.Time // when the last of them was
	active   []int32     // answers holding a slot
	queued   []int32     // requests waiting for a slot
	holders  []int32     // connected peers that announced the chunk
	asked    []time.Time // last request, for a seed's demand window
	// probation counts the answers in active held by peers on probation;
	// while distrust is set (a peer stalled lately) they are not copies:
	// a stalled answer reaches nobody.
	probation []int32
	distrust  bool
}

// counts returns release id's counts, made for n chunks on first use (a
// manifest ID fixes the chunk count). The caller holds mu.
func (u *uploads) counts(id release.ManifestID, n int) *chunkCounts {
	c := u.rels[id]
	if c == nil {
		c = &chunkCounts{
			sent: make([]int32, n), lastSent: make([]time.Time, n), active: make([]int32, n), queued: make([]int32, n),
			holders: make([]int32, n), asked: make([]time.Time, n), probation: make([]int32, n),
		}
		u.rels[id] = c
	}
	return c
}

// copies estimates how many copies of chunk i exist outside this node at
// now: the larger of the connected peers that announced it and the answers
// being sent or sent within haveWait (not announced yet, perhaps).
func (c *chunkCounts) copies(i int, now time.Time) int32 {
	out := c.active[i]
	if c.distrust {
		out -= c.probation[i]
	}
	if c.sent[i] > 0 && now.Sub(c.lastSent[i]) < haveWait {
		out += c.sent[i]
	}
	return max(c.holders[i], out)
}

// uncovered reports whether chunk i has no copy outside this node and
// none on its way (no request for it waits either).
func (c *chunkCounts) uncovered(i int, now time.Time) bool {
	return c.queued[i] == 0 && c.copies(i, now) == 0
}

// haveWait is how long a chunk answer written in full counts as a copy
// without the receiver announcing the chunk (a Have follows the answer
// within a round trip and a hash check).
const haveWait = 3 * time.Second

// seedTurn reports whether a seed should take a request for chunk i at
// all. Two rules, both among the chunks asked for recently (in demand), so
// that a chunk nobody asks for holds nothing back:
//
//   - No second copy while a chunk has none: a request for a chunk that is
//     out already (sent, being sent, queued or announced by a peer) is
//     refused while another chunk in demand has no copy at all. This is
//     what makes a seed put every chunk into the swarm within about one
//     copy's worth of upload.
//   - Round robin after that: a seed hands out each chunk once more before
//     any again (with a little slack), so its upload goes to chunks the
//     swarm lacks and peers trade the rest among themselves: BitTorrent's
//     super-seeding, decided by the server instead of by hiding pieces.
//
// A refused request gets Busy and the peer asks another peer or for
// another chunk. The caller holds mu.
func (c *chunkCounts) seedTurn(i int, now time.Time) bool {
	own := func(j int) int32 { return c.sent[j] + c.active[j] + c.queued[j] }
	covered := !c.uncovered(i, now)
	least := own(i)
	for j := range c.sent {
		if now.Sub(c.asked[j]) >= demandWindow {
			continue
		}
		if covered && c.uncovered(j, now) {
			return false
		}
		least = min(least, own(j))
	}
	return own(i) <= least+seedSlack
}

// uncoveredInDemand reports whether some chunk asked for recently has no
// copy outside this node and none on its way. The caller holds mu.
func (c *chunkCounts) uncoveredInDemand(now time.Time) bool {
	for j := range c.sent {
		if now.Sub(c.asked[j]) < demandWindow && c.uncovered(j, now) {
			return true
		}
	}
	return false
}

// demandWindow is how recently a chunk must have been asked for to count as
// in demand.
const demandWindow = 3 * time.Second

// seedSlack is how many more times a seed serves one chunk than its least
// served one in demand.
const seedSlack = 1

// acquire waits up to wait for an upload slot to answer a request for
// chunk i of release id (n chunks). seed says this node holds the whole
// release, so seedTurn may refuse the request at once. It reports false
// when the request gets no slot (refused, waited too long, or ctx ended);
// after true the caller must call finish exactly once.
func (u *uploads) acquire(ctx context.Context, peer wire.NodeID, id release.ManifestID, i, n int, seed bool, wait time.Duration) bool {
	u.mu.Lock()
	c := u.counts(id, n)
	if i < 0 || i >= len(c.sent) {
		u.mu.Unlock()
		return false
	}
	now := time.Now()
	c.distrust = u.stalling(now)
	pu := u.use(peer)
	if !pu.slowUntil.IsZero() && now.After(pu.slowUntil) {
		pu.slowUntil = time.Time{}
	}
	if pu.active+pu.queued >= peerRequests || now.Before(pu.slowUntil) || !u.mayHold(peer, now) {
		u.unuse(peer, pu)
		u.mu.Unlock()
		return false
	}
	// Demand counts only requests of peers that may have a slot: those of
	// a peer refused for stalling, or on probation while its slots are
	// taken, must not make a seed hold back the chunks others ask for.
	c.asked[i] = now
	if seed && !c.seedTurn(i, now) {
		u.unuse(peer, pu)
		u.mu.Unlock()
		return false
	}
	if u.free > 0 && (pu.active < u.perPeer || len(u.waiting) == 0) && u.mayHold(peer, now) {
		u.grant(peer, pu, c, i)
		u.mu.Unlock()
		return true
	}
	w := &upWaiter{peer: peer, id: id, index: i, seed: seed, ready: make(chan struct{})}
	u.waiting = append(u.waiting, w)
	c.queued[i]++
	pu.queued++
	u.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-t.C:
	case <-ctx.Done():
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if w.out {
		return w.granted // perhaps granted while giving up: then it is used
	}
	for k, o := range u.waiting {
		if o == w {
			u.waiting = append(u.waiting[:k], u.waiting[k+1:]...)
			break
		}
	}
	c.queued[i]--
	pu.queued--
	u.unuse(peer, pu)
	return false
}

// stalling reports whether a peer was penalised for stalling within
// slowPenalty before now. The caller holds mu.
func (u *uploads) stalling(now time.Time) bool {
	return !u.lastSlow.IsZero() && now.Sub(u.lastSlow) < slowPenalty
}

// mayHold reports whether peer may take a slot at now: a proven peer
// always, one on probation while no peer stalled lately or the probation
// slots are not all taken. The caller holds mu.
func (u *uploads) mayHold(peer wire.NodeID, now time.Time) bool {
	return u.proven[peer] || u.probation < u.perPeer || !u.stalling(now)
}

// grant gives peer a slot for chunk i of c. The caller holds mu.
func (u *uploads) grant(peer wire.NodeID, pu *peerUse, c *chunkCounts, i int) {
	u.free--
	pu.active++
	c.active[i]++
	if !u.proven[peer] {
		pu.probation++
		u.probation++
		c.probation[i]++
	}
}

// slow marks peer as having left an answer unread: it gets no slot for
// slowPenalty, and its requests waiting now are refused.
func (u *uploads) slow(peer wire.NodeID) {
	u.mu.Lock()
	defer u.mu.Unlock()
	pu := u.use(peer)
	u.lastSlow = time.Now()
	pu.slowUntil = u.lastSlow.Add(slowPenalty)
	if len(u.peers) > maxPeerUses {
		// Bounded: forget penalties of peers with nothing under way.
		for id, o := range u.peers {
			if o.active == 0 && o.queued == 0 && id != peer {
				delete(u.peers, id)
			}
		}
	}
}

// activeFor returns how many answers to peer hold a slot.
func (u *uploads) activeFor(peer wire.NodeID) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if pu := u.peers[peer]; pu != nil {
		return pu.active
	}
	return 0
}

// activeAnswers returns how many answers hold a slot.
func (u *uploads) activeAnswers() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, pu := range u.peers {
		n += pu.active
	}
	return n
}

// maxPeerUses bounds the peers remembered for penalties.
const maxPeerUses = 1024

// finish frees the slot taken for chunk i of release id; sent says the
// answer went out in full. The slot goes to the waiting request whose chunk
// has the fewest copies outside this node (then the fewest sent, then the
// longest waiting).
func (u *uploads) finish(peer wire.NodeID, id release.ManifestID, i int, sent bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if pu := u.peers[peer]; pu != nil && pu.active > 0 {
		pu.active--
		if pu.probation > 0 {
			pu.probation--
			u.probation--
			if c := u.rels[id]; c != nil && i < len(c.probation) && c.probation[i] > 0 {
				c.probation[i]--
			}
		}
		u.unuse(peer, pu)
	}
	u.free++
	if sent {
		if len(u.proven) >= maxPeerUses {
			clear(u.proven) // bounded; peers prove themselves again
		}
		u.proven[peer] = true
	}
	if c := u.rels[id]; c != nil && i < len(c.sent) {
		if c.active[i] > 0 {
			c.active[i]--
		}
		if sent {
			c.sent[i]++
			c.lastSent[i] = time.Now()
		}
	}
	now := time.Now()
	distrust := u.stalling(now)
	for _, c := range u.rels {
		c.distrust = distrust
	}
	for u.free > 0 {
		best := u.next(now)
		if best < 0 {
			return
		}
		w := u.waiting[best]
		u.waiting = append(u.waiting[:best], u.waiting[best+1:]...)
		c := u.rels[w.id]
		c.queued[w.index]--
		pu := u.use(w.peer)
		pu.queued--
		w.out = true
		// The best request is for a chunk that is out already while one in
		// demand is not: as seedTurn would now, refuse it (and so every
		// other request of the kind, as none is better).
		if w.seed && c.copies(w.index, now) > 0 && c.uncoveredInDemand(now) {
			u.unuse(w.peer, pu)
			close(w.ready)
			continue
		}
		u.grant(w.peer, pu, c, w.index)
		w.granted = true
		close(w.ready)
	}
}

// next returns the index in waiting of the request to serve next, or -1:
// the peer holding fewest slots (one past its share only when nobody
// else waits), then
// the chunk with the fewest copies, then the fewest sent, then the longest
// waiting; a peer on probation only while a probation slot is free. The
// caller holds mu.
func (u *uploads) next(now time.Time) int {
	best := -1
	var bestActive int
	var bestCopies, bestSent int32
	for k, w := range u.waiting {
		pu := u.peers[w.peer]
		a := pu.active
		if now.Before(pu.slowUntil) || !u.mayHold(w.peer, now) {
			continue
		}
		c := u.rels[w.id]
		cp, s := c.copies(w.index, now), c.sent[w.index]+c.active[w.index]
		if best < 0 || a < bestActive || (a == bestActive && (cp < bestCopies || (cp == bestCopies && s < bestSent))) {
			best, bestActive, bestCopies, bestSent = k, a, cp, s
		}
	}
	return best
}

// holders adds delta to the holder count of each chunk in idx of release
// id (n chunks).
func (u *uploads) holders(id release.ManifestID, n int, idx []int, delta int32) {
	if len(idx) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.counts(id, n)
	for _, i := range idx {
		if i >= 0 && i < len(c.holders) {
			c.holders[i] = max(0, c.holders[i]+delta)
		}
	}
}

// clearHolders forgets every holder count (the swarm restarted without its
// peers).
func (u *uploads) clearHolders() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.rels {
		clear(c.holders)
	}
}
