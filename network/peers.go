package network

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"

	"github.com/rpe-project/engine/release"
)

// getPeers is a get_peers traversal towards the swarm ID; each address found
// is passed to onPeer (from several goroutines).
func (n *Node) getPeers(s release.SwarmID, onPeer func(context.Context, netip.AddrPort)) (*traversal.Operation, error) {
	ih := krpc.ID(s)
	return n.traverse(ih, alphaPeer, true, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "get_peers", krpc.MsgArgs{
			InfoHash: ih,
			Want:     n.want,
		})
		if r := res.Reply.R; r != nil && onPeer != nil {
			for _, v := range r.Values {
				if ap, ok := addrPortOf(v); ok {
					onPeer(qctx, ap)
				}
			}
		}
		return tokenResult(res, addr)
	})
}

// Announce publishes this node as a peer of the swarm (BEP5): a get_peers
// traversal towards the swarm ID, then announce_peer with the QUIC port
// (implied_port 0: the DHT port is not the one peers dial) to the closest
// nodes that gave a token. It returns an error matching ErrNotStored if no
// node accepted the announce.
func (n *Node) Announce(ctx context.Context, s release.SwarmID) error {
	if n.closed() {
		return ErrClosed
	}
	octx, cancel := n.opContext(ctx)
	defer cancel()
	op, err := n.getPeers(s, nil)
	if err != nil {
		return fmt.Errorf("announce swarm %s: %w", s, err)
	}
	err = waitStalled(octx, op)
	finish(op)
	if err != nil {
		return fmt.Errorf("announce swarm %s: %w", s, err)
	}
	port := int(n.QUICAddr().Port())
	var ok atomic.Int64
	var mu sync.Mutex
	var lastErr error
	var wg sync.WaitGroup
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		token, _ := e.Data.(string)
		addr := e.Addr.ToNodeAddr()
		wg.Go(func() {
			res := n.query(octx, addr, "announce_peer", krpc.MsgArgs{
				InfoHash: krpc.ID(s), Port: &port, Token: token,
			})
			if err := res.ToError(); err != nil {
				mu.Lock()
				lastErr = err
				mu.Unlock()
				return
			}
			ok.Add(1)
		})
	})
	wg.Wait()
	if ok.Load() == 0 {
		return fmt.Errorf("announce swarm %s: %w (last error: %v)", s, ErrNotStored, lastErr)
	}
	n.log.Debug("announced", "swarm", s.String(), "port", port, "accepted", ok.Load())
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
	op, err := n.getPeers(s, func(qctx context.Context, ap netip.AddrPort) {
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
		_ = waitStalled(octx, op)
		finish(op)
	}()
	return out, nil
}
