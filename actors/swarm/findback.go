package swarm

import (
	"net/netip"
	"time"

	"github.com/rpe-project/engine/release"
)

// Peer lookups back off. A lookup of a release's swarm is a DHT traversal
// of a dozen queries or more; a node used to start one every FindInterval
// for the whole download. Now, while the node is connected to a peer that
// holds some of the release, a lookup that brought no address the node did
// not know doubles the wait before the next (up to maxFindBackoff), and
// with leanHolders such peers connected the node leans on them (their
// Haves, peer exchange) and waits the longest. A lookup that finds
// somebody new, or a node with no holder connected, goes back to
// FindInterval: a node that knows nobody keeps looking at full speed.

// Peer-lookup back-off bounds.
const (
	maxFindBackoff = 30 * time.Second
	leanHolders    = 4
)

// lookupState is the back-off of one joined release's peer lookups.
type lookupState struct {
	next    time.Time // no lookup before
	backoff time.Duration
	fresh   int // addresses the running lookup found that were not known
}

func (s *swarmActor) lookup(id release.ManifestID) *lookupState {
	if s.lookups == nil {
		s.lookups = map[release.ManifestID]*lookupState{}
	}
	st := s.lookups[id]
	if st == nil {
		st = &lookupState{}
		s.lookups[id] = st
	}
	return st
}

// holders counts the connected peers that announced chunks of id.
func (s *swarmActor) holders(id release.ManifestID) int {
	n := 0
	for _, p := range s.peers {
		if p.held[id] != nil {
			n++
		}
	}
	return n
}

// lookupDue reports whether a peer lookup of id may start now.
func (s *swarmActor) lookupDue(id release.ManifestID) bool {
	return s.holders(id) == 0 || !time.Now().Before(s.lookup(id).next)
}

// lookupFound counts an address a lookup of id found, before it is learnt.
func (s *swarmActor) lookupFound(id release.ManifestID, a netip.AddrPort) {
	if s.known[a] || s.dialing[a] {
		return
	}
	s.lookup(id).fresh++
}

// lookupDone schedules the next lookup of id.
func (s *swarmActor) lookupDone(id release.ManifestID) {
	st := s.lookup(id)
	h := s.holders(id)
	switch {
	case h >= leanHolders:
		st.backoff = maxFindBackoff
	case h == 0 || st.fresh > 0:
		st.backoff = 0
	default:
		st.backoff = min(max(2*st.backoff, s.cfg.FindInterval), maxFindBackoff)
	}
	st.fresh = 0
	st.next = time.Now().Add(st.backoff)
}
