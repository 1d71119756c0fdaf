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
	// Attempts is how many traversals ran (more than one when nobody
	// answered and there was time to try again).
	Attempts int
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
// fails verification are ignored and counted in GetStats.Invalid. After the
// first valid answer it returns once GetGrace has passed and the traversal
// has settled (its closest nodes have answered), or 4 × GetGrace after it;
// without one, when the traversal has nobody left to ask or has settled, or
// when ctx ends (then with the best record found, if any). A copy this node stores for others counts
// as a candidate too. When no DHT node answers at all it tries again, with
// backoff, within ctx's deadline.
//
// Without a record its error matches ErrNoAnswer (nobody answered),
// ErrNotFound (nodes answered, none holds a record), ErrTimedOut (ctx's
// deadline came while nodes were answering), ErrNoNodes (nobody to ask),
// ErrClosed, or ctx's error when ctx was cancelled.
func (n *Node) GetRecord(ctx context.Context, pub release.PublicKey) (*release.SignedPacket, GetStats, error) {
	start := time.Now()
	var st GetStats
	if n.closed() {
		return nil, st, ErrClosed
	}
	octx, cancel := n.opContext(ctx)
	defer cancel()

	best := n.localRecord(pub)
	var got *release.SignedPacket
	err := n.retry(octx, func(ctx context.Context) (bool, error) {
		sp, again, err := n.getOnce(ctx, pub, start, &st)
		if sp != nil && (got == nil || sp.Seq > got.Seq) {
			got = sp
		}
		return again && best == nil, err
	})
	if got != nil && (best == nil || got.Seq > best.Seq) {
		best = got
	}
	st.Elapsed = time.Since(start)
	if best != nil {
		st.Seq = best.Seq
		return best, st, nil
	}
	return nil, st, fmt.Errorf("get record %s: %w", pub, err)
}

// localRecord returns the valid copy of pub's record this node stores for
// others, or nil.
func (n *Node) localRecord(pub release.PublicKey) *release.SignedPacket {
	it, err := n.local.Get(bep44.Target(recordTarget(pub)))
	if err != nil {
		return nil
	}
	seq := it.Seq
	r := &krpc.Return{Bep44Return: krpc.Bep44Return{K: it.K, Sig: it.Sig, Seq: &seq}}
	v, err := bencode.Marshal(it.V)
	if err != nil {
		return nil
	}
	r.V = v
	sp, err := parseRecord(pub, r)
	if err != nil {
		return nil
	}
	return sp
}

// getOnce is one GetRecord traversal. It adds to st; again reports that
// nobody answered, so another attempt may do better.
func (n *Node) getOnce(ctx context.Context, pub release.PublicKey, start time.Time, st *GetStats) (_ *release.SignedPacket, again bool, _ error) {
	target := recordTarget(pub)
	var best *release.SignedPacket
	consider := func(sp *release.SignedPacket) {
		if best == nil || sp.Seq > best.Seq {
			best = sp
		}
	}
	var valid, invalid atomic.Int64
	p := newProgress()
	found := make(chan *release.SignedPacket)
	op, err := n.traverse(target, alphaGet, true, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "get", krpc.MsgArgs{
			Target: target,
			Want:   n.want,
		})
		if r := res.Reply.R; r != nil {
			p.responded(r.Token != nil && *r.Token != "")
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
		return nil, false, err
	}
	settled := make(chan error, 1)
	sctx, stopSettle := context.WithCancel(ctx)
	defer stopSettle()
	go func() { settled <- n.waitSettled(sctx, op, p, 0) }()
	// After the first valid record: return once GetGrace has passed and
	// the traversal has settled (a copy found early may be an old one left
	// on a node that is no longer among the closest), and at the latest
	// 4 × GetGrace after it.
	var grace, limit <-chan time.Time
	graced, isSettled := false, false
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
				l := time.NewTimer(4 * n.cfg.GetGrace)
				defer l.Stop()
				limit = l.C
			}
		case <-grace:
			graced = true
			if isSettled {
				break wait
			}
		case <-limit:
			break wait
		case <-settled:
			isSettled = true
			if best == nil || graced || ctx.Err() != nil {
				break wait
			}
		}
	}
	stopSettle()
	finish(op)
	defer func() {
		var newest int64
		if best != nil {
			newest = best.Seq
		}
		n.recent.save(target, closestOf(op), newest)
	}()
	// Answers that came while stopping.
	for {
		select {
		case sp := <-found:
			consider(sp)
			continue
		default:
		}
		break
	}
	stats := op.Stats()
	st.Queried += int(atomic.LoadUint32(&stats.NumAddrsTried))
	responses := p.responses.Load()
	st.Responses += int(responses)
	st.Valid += int(valid.Load())
	st.Invalid += int(invalid.Load())
	st.Attempts++
	if best != nil {
		return best, false, nil
	}
	err = n.opError(ctx, responses, ErrNotFound)
	return nil, responses == 0 && ctx.Err() == nil, err
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
//
// The lookup ends once the closest nodes have answered (departed nodes are
// not waited for), and early enough before ctx's deadline to leave time for
// the puts. When no node answers or none stores the item it tries again,
// with backoff, within ctx's deadline. Its errors match ErrNoAnswer,
// ErrNotStored (nodes answered, none accepted the put), ErrTimedOut,
// ErrSuperseded, ErrNoNodes or ErrClosed.
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
	err := n.retry(octx, func(ctx context.Context) (bool, error) { return n.putOnce(ctx, p) })
	if err != nil {
		return fmt.Errorf("put record %s seq %d: %w", pub, p.Seq, err)
	}
	return nil
}

// putOnce is one lookup-then-put of PutRecord; again reports that another
// attempt may succeed.
func (n *Node) putOnce(ctx context.Context, p *release.SignedPacket) (again bool, _ error) {
	pub := p.PublicKey
	target := recordTarget(pub)
	putArgs := func(token string) krpc.MsgArgs {
		seq := p.Seq
		return krpc.MsgArgs{K: [32]byte(pub), V: p.Packet, Seq: &seq, Sig: p.Sig, Token: token}
	}
	if closest, newest, ok := n.recent.take(target); ok {
		if newest > p.Seq {
			return false, fmt.Errorf("%w: seq %d found", ErrSuperseded, newest)
		}
		if stored, _ := n.toClosest(ctx, closest, "put", putArgs); stored > 0 {
			n.log.Debug("put record to the nodes of the last lookup", "key", pub.String(), "seq", p.Seq, "stored", stored)
			return false, nil
		}
	}
	var mu sync.Mutex
	var newest int64
	pr := newProgress()
	op, err := n.traverse(target, alphaGet, true, func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
		res := n.query(qctx, addr, "get", krpc.MsgArgs{
			Target: target,
			Want:   n.want,
		})
		if r := res.Reply.R; r != nil {
			pr.responded(r.Token != nil && *r.Token != "")
		}
		if sp, err := parseRecord(pub, res.Reply.R); err == nil && sp != nil {
			mu.Lock()
			newest = max(newest, sp.Seq)
			mu.Unlock()
		}
		return tokenResult(res, addr)
	})
	if err != nil {
		return false, err
	}
	err = n.waitSettled(ctx, op, pr, n.queryTimeout())
	finish(op)
	if err != nil {
		return false, n.opError(ctx, pr.responses.Load(), err)
	}
	mu.Lock()
	nw := newest
	mu.Unlock()
	if nw > p.Seq {
		return false, fmt.Errorf("%w: seq %d found", ErrSuperseded, nw)
	}
	stored, lastErr := n.toClosest(ctx, closestOf(op), "put", putArgs)
	if stored == 0 {
		if pr.responses.Load() == 0 {
			return ctx.Err() == nil, n.opError(ctx, 0, nil)
		}
		if lastErr == nil {
			lastErr = errors.New("no node gave a write token")
		}
		return ctx.Err() == nil, fmt.Errorf("%w: %v", ErrNotStored, lastErr)
	}
	n.log.Debug("put record", "key", pub.String(), "seq", p.Seq, "stored", stored)
	return false, nil
}

// toClosest sends query q, with the arguments args builds from each node's
// token, to the closest nodes of a finished traversal that gave a token, and
// returns how many accepted it and the last refusal.
func (n *Node) toClosest(ctx context.Context, closest []k_nearest_nodes.Elem, q string, args func(token string) krpc.MsgArgs) (int64, error) {
	var ok atomic.Int64
	var mu sync.Mutex
	var lastErr error
	var wg sync.WaitGroup
	for _, e := range closest {
		token, _ := e.Data.(string)
		addr := e.Addr.ToNodeAddr()
		wg.Go(func() {
			res := n.query(ctx, addr, q, args(token))
			if err := res.ToError(); err != nil {
				mu.Lock()
				lastErr = err
				mu.Unlock()
				n.log.Debug(q+" refused", "to", addr, "err", err)
				return
			}
			ok.Add(1)
		})
	}
	wg.Wait()
	return ok.Load(), lastErr
}

// closestOf returns the closest nodes of a finished traversal.
func closestOf(op *traversal.Operation) []k_nearest_nodes.Elem {
	var out []k_nearest_nodes.Elem
	op.Closest().Range(func(e k_nearest_nodes.Elem) { out = append(out, e) })
	return out
}

// lastGet remembers the closest nodes (with their write tokens) and the
// newest seq that this node's last record lookup found, so that a put right
// after it (what publishing does: read the record, put the next one) goes
// straight to those nodes instead of walking the DHT a second time.
type lastGet struct {
	mu      sync.Mutex
	target  krpc.ID
	at      time.Time
	closest []k_nearest_nodes.Elem
	newest  int64
}

// lastGetFresh is how long a lookup's closest nodes are reused by a put.
const lastGetFresh = 10 * time.Second

func (l *lastGet) save(target krpc.ID, closest []k_nearest_nodes.Elem, newest int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.target, l.at, l.closest, l.newest = target, time.Now(), closest, newest
}

// take returns, once, what the last lookup of target found, if fresh.
func (l *lastGet) take(target krpc.ID) ([]k_nearest_nodes.Elem, int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.target != target || time.Since(l.at) > lastGetFresh || len(l.closest) == 0 {
		return nil, 0, false
	}
	c, nw := l.closest, l.newest
	l.closest = nil
	return c, nw, true
}
