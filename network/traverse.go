package network

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"sync"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
)

// Traversal widths. The library defaults to 3 in flight; gets use more so
// that the first value arrives sooner.
const (
	alphaGet  = 8
	alphaPeer = 6
	alphaWalk = 3
)

// query sends one query with this node's resend policy.
func (n *Node) query(ctx context.Context, addr krpc.NodeAddr, q string, args krpc.MsgArgs) dht.QueryResult {
	return n.server.Query(ctx, dht.NewAddr(addr.UDP()), q, dht.QueryInput{
		MsgArgs:  args,
		NumTries: n.cfg.QuerySends,
	})
}

// traverse starts a traversal towards target from the routing table (or the
// starting nodes when the table is empty). The caller must call finish.
func (n *Node) traverse(target krpc.ID, alpha int, tokens bool,
	do func(context.Context, krpc.NodeAddr) traversal.QueryResult) (*traversal.Operation, error) {
	in := traversal.OperationInput{
		Target:     target,
		Alpha:      alpha,
		DoQuery:    do,
		NodeFilter: n.server.TraversalNodeFilter,
	}
	if tokens {
		in.DataFilter = func(d any) bool { _, ok := d.(string); return ok }
	}
	op := traversal.Start(in)
	nodes, err := n.server.TraversalStartingNodes()
	if err != nil {
		finish(op)
		return nil, fmt.Errorf("%w: %v", ErrNoNodes, err)
	}
	for i := range nodes {
		// The table holds IPv4 addresses in 16-byte form; the traversal
		// would query ::ffff:a.b.c.d and a.b.c.d as two nodes.
		ap := nodes[i].Addr.AddrPort
		nodes[i].Addr.AddrPort = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	op.AddNodes(nodes)
	return op, nil
}

// finish stops a traversal and waits for its queries to return.
func finish(op *traversal.Operation) {
	op.Stop()
	<-op.Stopped()
}

// waitStalled waits until op has nothing left to query or ctx ends.
func waitStalled(ctx context.Context, op *traversal.Operation) error {
	select {
	case <-op.Stalled():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

	if _, err := n.server.BootstrapContext(ctx); err != nil && ctx.Err() == nil {
		n.log.Debug("bootstrap traversal", "err", err)
	}
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

// pingTable pings every node in the routing table, so that nodes which only
// queried us become "good" and are handed out in find_node answers.
func (n *Node) pingTable(ctx context.Context) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, ni := range n.server.Nodes() {
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
	op, err := n.traverse(target, alphaWalk, false, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "find_node", krpc.MsgArgs{
			Target: target,
			Want:   n.want,
		})
		return nodesResult(res, addr)
	})
	if err != nil {
		return
	}
	defer finish(op)
	_ = waitStalled(ctx, op)
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
