package network

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
	"github.com/anacrolix/torrent/bencode"

	"github.com/rpe-project/engine/release"
)

// GetStats describes one GetRecord traversal.
type GetStats struct {
	Queried   int // DHT nodes queried
	Responses int // nodes that answered
	Valid     int // answers carrying a record with a valid signature
	Invalid   int // answers carrying a record that failed verification (ignored)
	// Seq of the record returned; 0 if none.
	Seq int64
	// FirstValid is when the first valid record arrived, from the start of
	// GetRecord; 0 if none did (or only the local copy).
	FirstValid time.Duration
	// Elapsed is the time GetRecord took.
	Elapsed time.Duration
}

// recordTarget is the BEP44 target of a mutable item with nil salt.
func recordTarget(pub release.PublicKey) krpc.ID { return krpc.ID(sha1.Sum(pub[:])) }

// parseRecord checks a get answer for pub. It returns nil, nil when the
// answer carries no value, and an error when it carries an invalid one.
func parseRecord(pub release.PublicKey, r *krpc.Return) (*release.SignedPacket, error) {
	if r == nil || len(r.V) == 0 {
		return nil, nil
	}
	if r.Seq == nil {
		return nil, errors.New("value without seq")
	}
	if r.K != pub {
		return nil, fmt.Errorf("value under key %x, want %s", r.K[:4], pub)
	}
	var packet []byte
	if err := bencode.Unmarshal(r.V, &packet); err != nil {
		return nil, fmt.Errorf("value is not a bencoded byte string: %w", err)
	}
	sp := &release.SignedPacket{PublicKey: pub, Seq: *r.Seq, Sig: r.Sig, Packet: packet}
	if err := sp.Verify(); err != nil {
		return nil, err
	}
	return sp, nil
}

// GetRecord looks up the publisher's signed packet (BEP44 mutable item, nil
// salt) and returns the valid one with the highest seq. Answers whose record
// fails verification are ignored and counted in GetStats.Invalid. It returns
// GetGrace after the first valid answer, when the traversal has nobody left
// to ask, or when ctx ends (then with the best record found, if any). A copy
// this node stores for others counts as a candidate too. It returns an error
// matching ErrNotFound when no valid record was found, ErrNoNodes when there
// was nobody to ask (and no local copy), or ctx's error.
func (n *Node) GetRecord(ctx context.Context, pub release.PublicKey) (*release.SignedPacket, GetStats, error) {
	start := time.Now()
	var st GetStats
	if n.closed() {
		return nil, st, ErrClosed
	}
	octx, cancel := n.opContext(ctx)
	defer cancel()
	target := recordTarget(pub)

	var best *release.SignedPacket
	consider := func(sp *release.SignedPacket) {
		if best == nil || sp.Seq > best.Seq {
			best = sp
		}
	}
	if it, err := n.local.Get(bep44.Target(target)); err == nil {
		seq := it.Seq
		r := &krpc.Return{Bep44Return: krpc.Bep44Return{K: it.K, Sig: it.Sig, Seq: &seq}}
		if v, err := bencode.Marshal(it.V); err == nil {
			r.V = v
			if sp, err := parseRecord(pub, r); err == nil && sp != nil {
				consider(sp)
			}
		}
	}

	var responses, valid, invalid atomic.Int64
	found := make(chan *release.SignedPacket)
	op, err := n.traverse(target, alphaGet, true, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "get", krpc.MsgArgs{
			Target: target,
			Want:   n.want,
		})
		if r := res.Reply.R; r != nil {
			responses.Add(1)
			sp, err := parseRecord(pub, r)
			switch {
			case err != nil:
				invalid.Add(1)
				n.log.Debug("ignored invalid record", "from", addr, "err", err)
			case sp != nil:
				valid.Add(1)
				select {
				case found <- sp:
				case <-qctx.Done():
				}
			}
		}
		return tokenResult(res, addr)
	})
	if err != nil {
		st.Elapsed = time.Since(start)
		if best != nil {
			st.Seq = best.Seq
			return best, st, nil
		}
		return nil, st, fmt.Errorf("get record %s: %w", pub, err)
	}
	var grace <-chan time.Time
	if best != nil {
		grace = time.After(n.cfg.GetGrace)
	}
	var ctxErr error
wait:
	for {
		select {
		case sp := <-found:
			consider(sp)
			if st.FirstValid == 0 {
				st.FirstValid = time.Since(start)
			}
			if grace == nil {
				t := time.NewTimer(n.cfg.GetGrace)
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			break wait
		case <-op.Stalled():
			break wait
		case <-octx.Done():
			ctxErr = octx.Err()
			break wait
		}
	}
	finish(op)
	stats := op.Stats()
	st.Queried = int(atomic.LoadUint32(&stats.NumAddrsTried))
	st.Responses, st.Valid, st.Invalid = int(responses.Load()), int(valid.Load()), int(invalid.Load())
	st.Elapsed = time.Since(start)
	if best != nil {
		st.Seq = best.Seq
		return best, st, nil
	}
	if ctxErr != nil {
		if n.closed() {
			return nil, st, ErrClosed
		}
		return nil, st, fmt.Errorf("get record %s: %w", pub, ctxErr)
	}
	return nil, st, fmt.Errorf("get record %s: %w", pub, ErrNotFound)
}

// PutRecord stores a signed packet in the DHT as a BEP44 mutable item with
// nil salt, on the nodes closest to its target that gave a write token. The
// packet may be signed by anyone: re-publishing someone else's record keeps
// it alive. Before putting, it looks the record up; if the DHT (or this
// node's store) already holds a valid record with a higher seq it returns
// ErrSuperseded and puts nothing (compare-and-swap on seq). Storing nodes
// themselves refuse a lower seq. It sends no BEP44 cas field: anacrolix/dht
// compares cas with the stored item's cas rather than its seq, so a cas
// would make every later put to that node fail.
func (n *Node) PutRecord(ctx context.Context, p *release.SignedPacket) error {
	if err := p.Verify(); err != nil {
		return fmt.Errorf("put record: %w", err)
	}
	if n.closed() {
		return ErrClosed
	}
	octx, cancel := n.opContext(ctx)
	defer cancel()
	pub := p.PublicKey
	target := recordTarget(pub)
	if it, err := n.local.Get(bep44.Target(target)); err == nil && it.Seq > p.Seq {
		return fmt.Errorf("put record %s seq %d: %w: seq %d stored here", pub, p.Seq, ErrSuperseded, it.Seq)
	}
	// Keep a copy here first: this node is a DHT node like any other, and a
	// lone first node serves it to those who join later.
	if err := n.local.Put(&bep44.Item{V: p.Packet, K: [32]byte(pub), Sig: p.Sig, Seq: p.Seq}); err != nil {
		n.log.Debug("store own copy", "err", err)
	}

	var mu sync.Mutex
	var newest int64
	op, err := n.traverse(target, alphaGet, true, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "get", krpc.MsgArgs{
			Target: target,
			Want:   n.want,
		})
		if sp, err := parseRecord(pub, res.Reply.R); err == nil && sp != nil {
			mu.Lock()
			newest = max(newest, sp.Seq)
			mu.Unlock()
		}
		return tokenResult(res, addr)
	})
	if err != nil {
		return fmt.Errorf("put record %s: %w", pub, err)
	}
	err = waitStalled(octx, op)
	finish(op)
	if err != nil {
		return fmt.Errorf("put record %s: %w", pub, err)
	}
	mu.Lock()
	nw := newest
	mu.Unlock()
	if nw > p.Seq {
		return fmt.Errorf("put record %s seq %d: %w: seq %d found", pub, p.Seq, ErrSuperseded, nw)
	}

	k := [32]byte(pub)
	seq := p.Seq
	var ok atomic.Int64
	var lastErr error
	var wg sync.WaitGroup
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		token, _ := e.Data.(string)
		addr := e.Addr.ToNodeAddr()
		wg.Go(func() {
			res := n.query(octx, addr, "put", krpc.MsgArgs{
				K: k, V: p.Packet, Seq: &seq, Sig: p.Sig, Token: token,
			})
			if err := res.ToError(); err != nil {
				mu.Lock()
				lastErr = err
				mu.Unlock()
				n.log.Debug("put refused", "to", addr, "err", err)
				return
			}
			ok.Add(1)
		})
	})
	wg.Wait()
	if ok.Load() == 0 {
		if lastErr == nil {
			lastErr = errors.New("no node gave a write token")
		}
		return fmt.Errorf("put record %s seq %d: %w: %v", pub, p.Seq, ErrNotStored, lastErr)
	}
	n.log.Debug("put record", "key", pub.String(), "seq", p.Seq, "stored", ok.Load())
	return nil
}
