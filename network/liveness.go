package network

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// liveness remembers the DHT nodes that stopped answering. anacrolix/dht
// keeps a node in its routing table, "good" and handed out to others, for
// 15 minutes after its last answer, and offers no way to drop it; on a
// churning network the table fills with departed nodes and every traversal
// spends a query timeout on each. So this node masks them itself: a node
// whose query went unanswered (every send timed out) is dead until it is
// heard from again or deadTTL passes. Dead nodes are never queried by this
// node's traversals and are cut from the node lists it answers with, so a
// bootstrap node stops handing departed nodes to newcomers within one
// failed query.
type liveness struct {
	ttl time.Duration
	max int

	count atomic.Int64 // len(dead), read without the lock on the hot paths
	mu    sync.Mutex
	dead  map[netip.AddrPort]time.Time // when marked
	// order holds the marks oldest first, for eviction without a scan; a
	// mark whose time no longer matches dead (cleared or marked again) is
	// stale and skipped.
	order []mark
}

type mark struct {
	ap netip.AddrPort
	at time.Time
}

// Defaults for liveness: a departed node stays masked for deadTTL unless it
// is heard from, and at most maxDead nodes are remembered (the oldest mark
// goes first).
const (
	deadTTL = 10 * time.Minute
	maxDead = 4096
)

func newLiveness(ttl time.Duration, max int) *liveness {
	return &liveness{ttl: ttl, max: max, dead: make(map[netip.AddrPort]time.Time)}
}

// failed marks ap dead: a query to it went unanswered.
func (l *liveness) failed(ap netip.AddrPort) {
	ap = unmapped(ap)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.dead[ap]; !ok {
		for len(l.dead) >= l.max && len(l.order) > 0 {
			m := l.order[0]
			l.order = l.order[1:]
			if at, ok := l.dead[m.ap]; ok && at.Equal(m.at) {
				delete(l.dead, m.ap)
			}
		}
	}
	l.dead[ap] = now
	l.order = append(l.order, mark{ap, now})
	if len(l.order) > 2*l.max {
		// Drop the stale marks, so order stays within twice max.
		live := l.order[:0]
		for _, m := range l.order {
			if at, ok := l.dead[m.ap]; ok && at.Equal(m.at) {
				live = append(live, m)
			}
		}
		l.order = append([]mark(nil), live...)
	}
	l.count.Store(int64(len(l.dead)))
}

// heard clears ap: a packet came from it.
func (l *liveness) heard(ap netip.AddrPort) {
	if l.count.Load() == 0 {
		return
	}
	ap = unmapped(ap)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.dead[ap]; ok {
		delete(l.dead, ap)
		l.count.Store(int64(len(l.dead)))
	}
}

// isDead reports whether ap is masked.
func (l *liveness) isDead(ap netip.AddrPort) bool {
	if l.count.Load() == 0 {
		return false
	}
	ap = unmapped(ap)
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.dead[ap]
	if ok && time.Since(at) > l.ttl {
		delete(l.dead, ap)
		l.count.Store(int64(len(l.dead)))
		return false
	}
	return ok
}

// len returns how many nodes are masked.
func (l *liveness) len() int { return int(l.count.Load()) }

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func nodeAddrPort(na krpc.NodeAddr) netip.AddrPort {
	a, _ := netip.AddrFromSlice(na.IP)
	return netip.AddrPortFrom(a.Unmap(), uint16(na.Port))
}

// filterReply cuts dead nodes from the node lists of an outgoing KRPC
// response. It works on the bytes (krpcscan.go): no decode, no re-encode,
// and b itself is returned when there is nothing to cut, or nothing is
// masked, or b is not a response carrying nodes.
func (l *liveness) filterReply(b []byte) []byte {
	if l.count.Load() == 0 || len(b) < 2 || b[0] != 'd' {
		return b
	}
	lists := answerNodeLists(b)
	if len(lists) == 0 {
		return b
	}
	nb, _ := cutNodes(b, lists, l.isDead)
	return nb
}
