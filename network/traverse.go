package network

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
	"github.com/anacrolix/dht/v2/types"
)

// Traversal widths. The library defaults to 3 in flight; gets use more so
// that the first value arrives sooner.
const (
	alphaGet  = 8
	alphaPeer = 6
	alphaWalk = 3
)

// query sends one query with this node's resend policy. A query left
// unanswered marks its node dead (see liveness).
func (n *Node) query(ctx context.Context, addr krpc.NodeAddr, q string, args krpc.MsgArgs) dht.QueryResult {
	n.kinds.add(q)
	res := n.server.Query(ctx, dht.NewAddr(addr.UDP()), q, dht.QueryInput{
		MsgArgs:  args,
		NumTries: n.cfg.QuerySends,
	})
	if errors.Is(res.Err, dht.TransactionTimeout) {
		n.live.failed(nodeAddrPort(addr))
	}
	return res
}

// queryTimeout is the longest one query can take: all its sends unanswered.
func (n *Node) queryTimeout() time.Duration {
	return time.Duration(n.cfg.QuerySends) * n.cfg.QueryResendDelay
}

// minLiveStart is how many live routing-table nodes a traversal wants to
// start from; with fewer, the bootstrap nodes are added as well.
const minLiveStart = 8

// traverse starts a traversal towards target from the routing table's live
// nodes, and from the bootstrap nodes too when the table holds fewer than
// minLiveStart live ones (all of its nodes may have left). Nodes masked as
// dead are never queried. The caller must call finish.
func (n *Node) traverse(target krpc.ID, alpha int, tokens bool,
	do func(context.Context, krpc.NodeAddr) traversal.QueryResult) (*traversal.Operation, error) {
	in := traversal.OperationInput{
		Target:  target,
		Alpha:   alpha,
		DoQuery: do,
		NodeFilter: func(a types.AddrMaybeId) bool {
			return n.server.TraversalNodeFilter(a) && !n.live.isDead(unmapped(a.Addr.AddrPort))
		},
	}
	if tokens {
		in.DataFilter = func(d any) bool { _, ok := d.(string); return ok }
	}
	op := traversal.Start(in)
	nodes, err := n.server.TraversalStartingNodes()
	live := 0
	for i := range nodes {
		// The table holds IPv4 addresses in 16-byte form; the traversal
		// would query ::ffff:a.b.c.d and a.b.c.d as two nodes.
		ap := nodes[i].Addr.AddrPort
		nodes[i].Addr.AddrPort = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if nodes[i].Id.Ok && !n.live.isDead(nodes[i].Addr.AddrPort) {
			live++
		}
	}
	if live < minLiveStart && err == nil && nodes[0].Id.Ok {
		// Starting from the table: add the bootstrap nodes as well.
		if boot, berr := n.startingNodes(); berr == nil {
			for _, a := range boot {
				nodes = append(nodes, types.AddrMaybeId{Addr: a.KRPC().ToNodeAddrPort()})
			}
		}
	}
	if err != nil {
		finish(op)
		return nil, fmt.Errorf("%w: %v", ErrNoNodes, err)
	}
	if op.AddNodes(nodes) == 0 {
		// Every known node is masked as dead: forget the masks of the
		// starting nodes rather than give up.
		for _, a := range nodes {
			n.live.heard(a.Addr.AddrPort)
		}
		op.AddNodes(nodes)
	}
	return op, nil
}

// finish stops a traversal and waits for its queries to return.
func finish(op *traversal.Operation) {
	op.Stop()
	<-op.Stopped()
}

// progress counts a traversal's useful answers, so that waiting for it can
// end once the closest nodes have answered, without waiting out the query
// timeouts of the slowest (often departed) nodes still outstanding.
type progress struct {
	answers   atomic.Int64
	responses atomic.Int64 // any answer at all, useful or not
	ch        chan struct{}
}

func newProgress() *progress { return &progress{ch: make(chan struct{}, 1)} }

// responded counts an answer; useful ones (a token, a value) also count
// towards settling.
func (p *progress) responded(useful bool) {
	p.responses.Add(1)
	if !useful {
		return
	}
	p.answers.Add(1)
	select {
	case p.ch <- struct{}{}:
	default:
	}
}

// settleK is how many useful answers a traversal needs before a quiet spell
// may end it: the library's K, the number of closest nodes a put goes to.
const settleK = 8

// waitSettled waits until op stalls; or until it has settleK useful answers
// and no new one for half a resend delay (the live nodes among the closest have
// answered by then; what is outstanding is most likely gone); or until only
// reserve is left of ctx's deadline, for the step that follows (a put, an
// announce). It returns ctx's error only when ctx itself ended.
func (n *Node) waitSettled(ctx context.Context, op *traversal.Operation, p *progress, reserve time.Duration) error {
	var early <-chan time.Time
	if dl, ok := ctx.Deadline(); ok && reserve > 0 {
		t := time.NewTimer(time.Until(dl) - reserve)
		defer t.Stop()
		early = t.C
	}
	quiet := time.NewTimer(n.settleQuiet())
	defer quiet.Stop()
	for {
		select {
		case <-op.Stalled():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-early:
			return nil
		case <-p.ch:
			quiet.Reset(n.settleQuiet())
		case <-quiet.C:
			if p.answers.Load() >= settleK {
				return nil
			}
			quiet.Reset(n.settleQuiet())
		}
	}
}

// Retry policy of a failed operation: up to maxAttempts attempts, the first
// retry after retryBackoff, each later one after twice the wait before,
// all within the caller's deadline.
const (
	maxAttempts  = 3
	retryBackoff = 250 * time.Millisecond
)

// retry runs attempt until it succeeds, fails in a way another attempt
// cannot fix (again false), or the budget ends: maxAttempts, ctx, or a
// deadline too close for one more attempt.
func (n *Node) retry(ctx context.Context, attempt func(context.Context) (again bool, err error)) error {
	backoff := retryBackoff
	for i := 1; ; i++ {
		again, err := attempt(ctx)
		if err == nil || !again || i == maxAttempts || ctx.Err() != nil {
			return err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < backoff+n.queryTimeout() {
			return err
		}
		n.log.Debug("retrying DHT operation", "attempt", i+1, "after", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff *= 2
	}
}

// opError tells why an operation that answered nothing useful failed:
// ErrClosed, ErrNoAnswer when nobody answered at all (with ctx's error if
// it ended), ErrTimedOut when the deadline came while nodes were answering,
// ctx's error when it was cancelled, and notFound otherwise.
func (n *Node) opError(ctx context.Context, responses int64, notFound error) error {
	switch {
	case n.closed():
		return ErrClosed
	case responses == 0 && ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ErrNoAnswer, ctx.Err())
	case responses == 0:
		return ErrNoAnswer
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w (%d answered): %w", ErrTimedOut, responses, ctx.Err())
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return notFound
}

// tokenResult converts a reply to a traversal result whose ClosestData is the
// reply's token, so that only nodes that gave a token become "closest".
func tokenResult(res dht.QueryResult, addr krpc.NodeAddr) traversal.QueryResult {
	tqr := nodesResult(res, addr)
	if s, ok := tqr.ClosestData.(string); ok && s != "" {
		tqr.ClosestData = s
	} else {
		tqr.ClosestData = nil
		tqr.ResponseFrom = nil
	}
	return tqr
}

// Bootstrap fills the routing table. A single bootstrap traversal leaves a
// sparse table (nodes that only queried us are not "good" and are not handed
// to others), so after the library's bootstrap Bootstrap pings every node in
// the table and, at the same time, walks towards three random targets; then
// it starts the library's table maintainer (unless Config.NoMaintainer),
// which pings questionable nodes and refreshes buckets every minute until
// Close. Call it again at any time to refresh. It returns ErrNoNodes if the
// table is still empty.
func (n *Node) Bootstrap(ctx context.Context) error {
	if n.closed() {
		return ErrClosed
	}
	select {
	case n.boot <- struct{}{}:
		defer func() { <-n.boot }()
	case <-ctx.Done():
		return fmt.Errorf("bootstrap: %w", ctx.Err())
	case <-n.done:
		return ErrClosed
	}
	if n.closed() {
		return ErrClosed
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()

	// Join: a walk towards our own ID (what the library's bootstrap does,
	// but with this node's query policy, dead-node masking and settling).
	n.walk(ctx, krpc.ID(n.server.ID()))
	var wg sync.WaitGroup
	wg.Go(func() { n.pingTable(ctx) })
	for range 3 {
		var target krpc.ID
		rand.Read(target[:])
		wg.Go(func() { n.walk(ctx, target) })
	}
	wg.Wait()

	if ctx.Err() != nil {
		if n.closed() {
			return ErrClosed
		}
		return fmt.Errorf("bootstrap: %w", ctx.Err())
	}
	if !n.cfg.NoMaintainer {
		n.maintainerOnce.Do(func() {
			go func() {
				defer close(n.maintainerDone)
				n.server.TableMaintainer()
			}()
		})
	}
	size := n.server.NumNodes()
	n.log.Debug("bootstrapped", "table", size)
	if size == 0 {
		return fmt.Errorf("bootstrap: %w", ErrNoNodes)
	}
	return nil
}

// Join bootstraps in the background, unless a Bootstrap is running, and
// returns at once. A GetRecord, PutRecord, Announce or FindPeers started
// meanwhile does not wait for it: with too few live nodes in the routing
// table a traversal starts from the bootstrap nodes as well.
func (n *Node) Join() {
	select {
	case n.boot <- struct{}{}:
		<-n.boot // free: the Bootstrap below takes it again
	default:
		return // one is running
	}
	if !n.track() {
		return
	}
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		defer cancel()
		if err := n.Bootstrap(ctx); err != nil {
			n.log.Debug("join", "err", err)
		}
	}()
}

// joinTimeout bounds the Bootstrap that Join starts.
const joinTimeout = time.Minute

// pingTable pings every node in the routing table, so that nodes which only
// queried us become "good" and are handed out in find_node answers.
func (n *Node) pingTable(ctx context.Context) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, ni := range n.server.Nodes() {
		if n.live.isDead(nodeAddrPort(ni.Addr)) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			n.query(ctx, ni.Addr, "ping", krpc.MsgArgs{})
		})
	}
	wg.Wait()
}

// walk runs a find_node traversal towards target; the server adds every node
// that answers to its table.
func (n *Node) walk(ctx context.Context, target krpc.ID) {
	p := newProgress()
	op, err := n.traverse(target, alphaWalk, false, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "find_node", krpc.MsgArgs{
			Target: target,
			Want:   n.want,
		})
		if res.Reply.R != nil {
			p.responded(true)
		}
		return nodesResult(res, addr)
	})
	if err != nil {
		return
	}
	defer finish(op)
	_ = n.waitSettled(ctx, op, p, 0)
}

// nodesResult converts a reply to a traversal result. The server answers
// "n6" with every node, IPv4 ones in v4-mapped form; those are moved to the
// IPv4 list so that the traversal does not query them twice under two
// spellings of one address.
func nodesResult(res dht.QueryResult, addr krpc.NodeAddr) traversal.QueryResult {
	tqr := res.TraversalQueryResult(addr)
	if len(tqr.Nodes6) == 0 {
		return tqr
	}
	n6 := tqr.Nodes6[:0:0]
	for _, ni := range tqr.Nodes6 {
		if ip4 := ni.Addr.IP.To4(); ip4 != nil {
			ni.Addr.IP = ip4
			tqr.Nodes = append(tqr.Nodes, ni)
			continue
		}
		n6 = append(n6, ni)
	}
	tqr.Nodes6 = n6
	return tqr
}

// settleQuiet is the quiet spell after which a traversal with settleK
// useful answers ends: half a resend delay, several round trips.
func (n *Node) settleQuiet() time.Duration { return n.cfg.QueryResendDelay / 2 }
