package network

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"

	"github.com/rpe-project/engine/release"
)

// getPeers is a get_peers traversal towards the swarm ID; each address found
// is passed to onPeer (from several goroutines). Answers are counted in p.
func (n *Node) getPeers(s release.SwarmID, p *progress, onPeer func(context.Context, netip.AddrPort)) (*traversal.Operation, error) {
	ih := krpc.ID(s)
	return n.traverse(ih, alphaPeer, true, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "get_peers", krpc.MsgArgs{
			InfoHash: ih,
			Want:     n.want,
		})
		if r := res.Reply.R; r != nil {
			p.responded(r.Token != nil && *r.Token != "")
			if onPeer != nil {
				for _, v := range r.Values {
					if ap, ok := addrPortOf(v); ok {
						onPeer(qctx, ap)
					}
				}
			}
		}
		return tokenResult(res, addr)
	})
}

// Announce publishes this node as a peer of the swarm (BEP5): a get_peers
// traversal towards the swarm ID, then announce_peer with the QUIC port
// (implied_port 0: the DHT port is not the one peers dial) to the closest
// nodes that gave a token. Like PutRecord it does not wait for departed
// nodes and retries within ctx's deadline. Its errors match ErrNoAnswer,
// ErrNotStored (nodes answered, none accepted the announce), ErrTimedOut,
// ErrNoNodes or ErrClosed.
func (n *Node) Announce(ctx context.Context, s release.SwarmID) error {
	if n.closed() {
		return ErrClosed
	}
	octx, cancel := n.opContext(ctx)
	defer cancel()
	port := n.announcePort()
	err := n.retry(octx, func(ctx context.Context) (bool, error) {
		p := newProgress()
		op, err := n.getPeers(s, p, nil)
		if err != nil {
			return false, err
		}
		err = n.waitSettled(ctx, op, p, n.queryTimeout())
		finish(op)
		if err != nil {
			return false, n.opError(ctx, p.responses.Load(), err)
		}
		ok, lastErr := n.toClosest(ctx, closestOf(op), "announce_peer", func(token string) krpc.MsgArgs {
			return krpc.MsgArgs{InfoHash: krpc.ID(s), Port: &port, Token: token}
		})
		if ok == 0 {
			if p.responses.Load() == 0 {
				return ctx.Err() == nil, n.opError(ctx, 0, nil)
			}
			return ctx.Err() == nil, fmt.Errorf("%w (last error: %v)", ErrNotStored, lastErr)
		}
		n.log.Debug("announced", "swarm", s.String(), "port", port, "accepted", ok)
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("announce swarm %s: %w", s, err)
	}
	return nil
}

// FindPeers looks up the peers of a swarm (BEP5 get_peers). Addresses arrive
// on the channel as the traversal finds them, each once; the channel is
// closed when the traversal has nobody left to ask, when ctx ends or when the
// node closes. Read it to the end (or cancel ctx). The node's own address may
// be among them if it announced.
func (n *Node) FindPeers(ctx context.Context, s release.SwarmID) (<-chan netip.AddrPort, error) {
	if n.closed() {
		return nil, ErrClosed
	}
	octx, cancel := n.opContext(ctx)
	out := make(chan netip.AddrPort, 16)
	var mu sync.Mutex
	seen := make(map[netip.AddrPort]bool)
	p := newProgress()
	op, err := n.getPeers(s, p, func(qctx context.Context, ap netip.AddrPort) {
		mu.Lock()
		dup := seen[ap]
		seen[ap] = true
		mu.Unlock()
		if dup {
			return
		}
		select {
		case out <- ap:
		case <-qctx.Done():
		case <-octx.Done():
		}
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("find peers of swarm %s: %w", s, err)
	}
	if !n.track() {
		cancel()
		finish(op)
		close(out)
		return out, nil
	}
	go func() {
		defer n.wg.Done()
		defer close(out)
		defer cancel()
		_ = n.waitSettled(octx, op, p, 0)
		finish(op)
	}()
	return out, nil
}
