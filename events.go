package engine

import (
	"errors"
	"sync"
	"time"

	"github.com/rpe-project/engine/release"
)

// Event is something the engine did or saw. The concrete types below are
// all the events there are; switch on them.
type Event interface{ event() }

// ReleaseFound: the signed record names a release newer than the running one.
type ReleaseFound struct {
	Version    string
	ManifestID release.ManifestID
	Size       int64
}

// Progress: chunks of the release being fetched were verified.
type Progress struct {
	ManifestID release.ManifestID
	Verified   int
	Total      int
	Bytes      int64
	Size       int64
	Peers      int
	Fetched    int64 // chunk bytes received since start
	Wasted     int64 // duplicate and rejected chunk bytes since start
}

// Reused: before downloading, Chunks of the release (Bytes long) were
// found in the installed file and copied from it, each checked against the
// signed manifest like a downloaded chunk; only the other chunks are
// fetched. Verified of Total chunks are now held.
type Reused struct {
	ManifestID      release.ManifestID
	Chunks          int
	Bytes           int64
	Verified, Total int
}

// NotRolledOut: the record names a newer release staged to Rollout
// percent of nodes, and this node is not among them (its bucket, from its
// node key and the manifest ID, is Rollout or above), so it does not fetch
// it. A later record with a higher percentage may bring it in; once in, a
// node stays in. Emitted once per release and percentage.
type NotRolledOut struct {
	Version    string
	ManifestID release.ManifestID
	Rollout    int
}

// Verified: every byte of a release is verified and staged at Path.
type Verified struct {
	Version    string
	ManifestID release.ManifestID
	Path       string
}

// Scheduled: a verified release will be applied At (policy at=HH:MM).
type Scheduled struct {
	Version string
	At      time.Time
}

// Installed: the target was swapped. Restarting means the process is about
// to be replaced by the new version.
type Installed struct {
	Version    string
	ManifestID release.ManifestID
	Target     string
	Restarting bool
}

// Refused: something from the network was refused and nothing was
// installed: a record (wrong key or signature, replayed, malformed, no entry
// for this app, channel and platform, below the version floor, or the floor
// unreadable), a manifest (wrong app or platform, expired, not newer), a
// chunk (bad hash) or a release (rolled back here before).
type Refused struct {
	What   Refusal
	Peer   string // who sent it, if known
	Reason error
}

// ErrStageStopped is the Failed.Err (wrapped) of a stage stopped for good
// after failing too often; Status.Stopped lists it from then on.
var ErrStageStopped = errors.New("stage stopped for good")

// Failed: a stage could not go on (disk full, install failed, ...).
type Failed struct {
	Stage Stage
	Err   error
}

// Served: a chunk was uploaded to a peer.
type Served struct {
	Peer       string // the peer's node ID
	ManifestID release.ManifestID
	Index      int
	Bytes      int
	// Path is how this node is connected to the peer: "direct", "punch"
	// (a hole punched through a NAT) or "relay" (through a relay node that
	// forwards only ciphertext); Addr the peer's address as this node sees
	// it (through a relay: as the relay sees it).
	Path string
	Addr string
}

// StageRestarted: a stage crashed and its supervisor restarted it.
type StageRestarted struct {
	Stage  Stage
	Reason any
}

// Stale: the node has seen no fresh record for longer than
// Config.StaleAfter. Signed is when the newest record it holds was signed
// (zero when it holds none) and Age how long ago. A publisher that stopped
// re-signing looks like this, and so does an eclipse (DHT nodes and peers
// hiding every newer record). Status.Stale stays set until a record signed
// within the bound arrives.
type Stale struct {
	Signed time.Time
	Age    time.Duration
}

// KeyRotated: the publisher moved from key Old to key New with a statement
// signed by both (see docs/SECURITY.md); the node saved it and from now on,
// restarts included, accepts records and manifests signed by New only.
type KeyRotated struct {
	Old, New string // z-base-32
}

func (KeyRotated) event()     {}
func (Stale) event()          {}
func (ReleaseFound) event()   {}
func (Progress) event()       {}
func (Reused) event()         {}
func (NotRolledOut) event()   {}
func (Verified) event()       {}
func (Scheduled) event()      {}
func (Installed) event()      {}
func (Refused) event()        {}
func (Failed) event()         {}
func (Served) event()         {}
func (StageRestarted) event() {}

// eventQueue delivers events in order without ever blocking the actor that
// emits them. When nobody reads, Progress and Served events beyond a soft
// bound are dropped (later ones supersede them), and every event beyond a
// hard bound, so a reader that never reads cannot make a node's memory grow
// with what peers send.
type eventQueue struct {
	onEmit  func(Event) // sees every event, read or not
	out     chan Event
	mu      sync.Mutex
	cond    *sync.Cond
	q       []Event
	done    bool
	dropped int64 // events dropped because nobody read them
	stop    chan struct{}
	wg      sync.WaitGroup
}

const (
	eventQueueSoftCap = 4096
	eventQueueHardCap = 65536
)

func newEventQueue() *eventQueue {
	e := &eventQueue{out: make(chan Event), stop: make(chan struct{})}
	e.cond = sync.NewCond(&e.mu)
	e.wg.Add(1)
	go e.run()
	return e
}

func (e *eventQueue) emit(ev Event) {
	if e.onEmit != nil {
		e.onEmit(ev)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return
	}
	if len(e.q) >= eventQueueSoftCap {
		switch ev.(type) {
		case Progress, Served:
			e.dropped++
			return
		}
	}
	if len(e.q) >= eventQueueHardCap {
		// Nobody reads and peers keep causing events: keep memory bounded.
		e.dropped++
		return
	}
	e.q = append(e.q, ev)
	e.cond.Signal()
}

func (e *eventQueue) run() {
	defer e.wg.Done()
	defer close(e.out)
	for {
		e.mu.Lock()
		for len(e.q) == 0 && !e.done {
			e.cond.Wait()
		}
		if e.done {
			e.mu.Unlock()
			return
		}
		ev := e.q[0]
		e.q[0] = nil
		e.q = e.q[1:]
		e.mu.Unlock()
		// A reader that stops reading must not keep the engine alive.
		select {
		case e.out <- ev:
		case <-e.stop:
			return
		}
	}
}

func (e *eventQueue) close() {
	e.mu.Lock()
	if e.done {
		e.mu.Unlock()
		return
	}
	e.done = true
	close(e.stop)
	e.cond.Broadcast()
	e.mu.Unlock()
	e.wg.Wait()
}
