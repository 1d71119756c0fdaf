package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// send asks a peer actor to send one message to its peer.
type send struct{ msg wire.Message }

// closed tells a peer actor its connection ended.
type closed struct{ err error }

type peerConfig struct {
	conn       *wire.Conn
	store      *store.Store
	logger     *slog.Logger
	ctr        *counters
	limiter    *rate.Limiter
	uploadWait time.Duration
	parent     *actor.PID
	faultHook  func(any)
	// serveFault, when set, is called before each chunk is served to the
	// peer; tests make it panic (Config.ServeFault).
	serveFault func(peer wire.NodeID, id release.ManifestID, index int)
	// use counts what the peer gave and took (shared with the swarm).
	use *peerUseful
}

// peerActor owns one connection: it serves the peer's requests from the
// store, passes the peer's one-way messages up to the swarm, and makes the
// requests the subscriber asks of this peer (GetManifest, GetChunk), each
// answered to the asker by message. Nothing else touches the connection.
type peerActor struct {
	cfg    peerConfig
	out    chan wire.Message
	ctx    context.Context
	cancel context.CancelFunc
	// reqs are the chunk requests under way, so CancelChunk can end one.
	reqs map[chunkKey]pending
	tok  uint64
}

// chunkKey names one chunk of one release.
type chunkKey struct {
	id    release.ManifestID
	index int
}

// pending is a chunk request under way; tok tells apart two requests for
// the same chunk.
type pending struct {
	cancel context.CancelFunc
	tok    uint64
}

// Messages from the swarm actor to a peer actor: a subscriber's request
// with whom to answer, and the end of a request's goroutine.
type (
	fetchChunk struct {
		req   *GetChunk
		reply *actor.PID
	}
	fetchManifest struct {
		req   *GetManifest
		reply *actor.PID
	}
	reqDone struct {
		key chunkKey
		tok uint64
	}
)

func peerProps(cfg peerConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &peerActor{cfg: cfg} })
}

func (p *peerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *actor.Stopping:
		p.cancel()
		p.cfg.conn.Close(wire.CodeNone, "bye")
	case *actor.Restarting:
		// A peer actor is never restarted with a live connection: the
		// connection may be in any state. Close it; the swarm redials.
		p.cancel()
		p.cfg.conn.Close(wire.CodeProtocol, "internal error")
	case *send:
		select {
		case p.out <- m.msg:
		default:
			// A peer that cannot keep up loses announcements, not memory.
			p.cfg.logger.Debug("swarm: outbox full, message dropped", "peer", p.cfg.conn.RemoteID())
		}
	case *closed:
		ctx.Stop(ctx.Self())
	case *fetchChunk:
		p.getChunk(ctx, m)
	case *fetchManifest:
		p.getManifest(ctx, m)
	case *CancelChunk:
		if r, ok := p.reqs[chunkKey{m.ID, m.Index}]; ok {
			r.cancel()
		}
	case *reqDone:
		if r, ok := p.reqs[m.key]; ok && r.tok == m.tok {
			delete(p.reqs, m.key)
		}
	}
}

// getChunk asks the peer for a chunk on a goroutine of this actor's and
// sends the asker exactly one ChunkArrived or ChunkFailed. Stopping the
// actor ends the request (with ChunkFailed).
func (p *peerActor) getChunk(ctx actor.Context, m *fetchChunk) {
	r := m.req
	key := chunkKey{r.ID, r.Index}
	if old, ok := p.reqs[key]; ok {
		old.cancel() // asked again: the newer request stands
	}
	rctx, cancel := withTimeout(p.ctx, r.Timeout)
	p.tok++
	tok := p.tok
	p.reqs[key] = pending{cancel: cancel, tok: tok}
	sys, self, conn, use := ctx.ActorSystem(), ctx.Self(), p.cfg.conn, p.cfg.use
	use.asking.Add(1)
	go func() {
		defer cancel()
		defer use.asking.Add(-1)
		var answer any
		if r.Size <= 0 || r.Index < 0 {
			answer = &ChunkFailed{Peer: r.Peer, ID: r.ID, Index: r.Index, Err: fmt.Errorf("chunk %d of %d bytes: %w", r.Index, r.Size, wire.ErrBadIndex)}
		} else {
			// FetchChunk allocates only once the peer answers with the chunk.
			buf, err := conn.FetchChunk(rctx, r.ID, uint32(r.Index), r.Size)
			if err != nil {
				answer = &ChunkFailed{Peer: r.Peer, ID: r.ID, Index: r.Index, Err: err}
			} else {
				answer = &ChunkArrived{Peer: r.Peer, ID: r.ID, Index: r.Index, Data: buf}
				use.gave.Add(int64(len(buf)))
			}
		}
		if m.reply != nil {
			sys.Root.Send(m.reply, answer)
		}
		sys.Root.Send(self, &reqDone{key: key, tok: tok})
	}()
}

// getManifest asks the peer for a manifest on a goroutine of this actor's
// and sends the asker one ManifestArrived.
func (p *peerActor) getManifest(ctx actor.Context, m *fetchManifest) {
	r := m.req
	rctx, cancel := withTimeout(p.ctx, r.Timeout)
	sys, conn := ctx.ActorSystem(), p.cfg.conn
	go func() {
		defer cancel()
		raw, err := conn.GetManifest(rctx, r.ID)
		if m.reply != nil {
			sys.Root.Send(m.reply, &ManifestArrived{Peer: r.Peer, ID: r.ID, Raw: raw, Err: err})
		}
	}()
}

// withTimeout is context.WithTimeout, or WithCancel when d is 0.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

func (p *peerActor) start(ctx actor.Context) {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.reqs = map[chunkKey]pending{}
	sys, self := ctx.ActorSystem(), ctx.Self()
	h := &handler{cfg: p.cfg, sys: sys, ctx: p.ctx}
	conn, c, log := p.cfg.conn, p.ctx, p.cfg.logger
	go func() {
		err := conn.Serve(c, h)
		sys.Root.Send(self, &closed{err: err})
	}()
	hello := &wire.Hello{Version: wire.ProtocolVersion}
	for _, r := range p.cfg.store.List() {
		hs := wire.HaveSet{ID: r.ID(), Complete: r.Complete()}
		if !hs.Complete {
			hs.Bitfield = r.Bitfield()
		}
		hello.Releases = append(hello.Releases, hs)
	}
	// One writer per peer: the Hello goes first (the protocol requires it)
	// and every later message in order, from a bounded outbox.
	p.out = make(chan wire.Message, outboxSize)
	go func() {
		send := func(m wire.Message) bool {
			sctx, cancel := context.WithTimeout(c, 10*time.Second)
			defer cancel()
			if err := conn.Send(sctx, m); err != nil {
				log.Debug("swarm: send", "peer", conn.RemoteID(), "type", m.Type(), "err", err)
				return false
			}
			return true
		}
		if !send(hello) {
			return
		}
		for {
			select {
			case m := <-p.out:
				if !send(m) {
					return
				}
			case <-c.Done():
				return
			}
		}
	}()
}

// outboxSize bounds the messages waiting to be sent to one peer.
const outboxSize = 256

// handler answers a peer's requests; it runs on the connection's
// goroutines, which the peer actor's Serve call started. Each method
// recovers: a panic while serving the peer closes that peer's connection
// (its actor then stops, and the swarm tells the subscriber PeerDown),
// never the process.
type handler struct {
	cfg peerConfig
	sys *actor.ActorSystem
	ctx context.Context
}

// recovered turns a panic in a handler method into the failure of this
// peer: the connection closes and, when err is not nil, the request gets
// an error matching ErrServePanic. Call it deferred.
func (h *handler) recovered(what string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	h.cfg.logger.Error("swarm: panic while serving a peer; dropping it", "peer", h.cfg.conn.RemoteID(), "in", what, "panic", r, "stack", string(debug.Stack()))
	h.cfg.ctr.servePanics.Add(1)
	h.cfg.conn.Close(wire.CodeInternal, "internal error")
	if err != nil {
		*err = fmt.Errorf("%w: %s: %v", ErrServePanic, what, r)
	}
}

func (h *handler) Manifest(id release.ManifestID) (b []byte, err error) {
	defer h.recovered("Manifest", &err)
	r := h.cfg.store.Get(id)
	if r == nil {
		return nil, wire.ErrNotFound
	}
	return r.Manifest().Raw, nil
}

func (h *handler) Chunk(id release.ManifestID, index uint32, buf []byte) (b []byte, err error) {
	defer h.recovered("Chunk", &err)
	return h.chunk(id, index, buf)
}

func (h *handler) chunk(id release.ManifestID, index uint32, buf []byte) (b []byte, err error) {
	if h.cfg.serveFault != nil {
		h.cfg.serveFault(h.cfg.conn.RemoteID(), id, int(index))
	}
	r := h.cfg.store.Get(id)
	if r == nil {
		return nil, wire.ErrNotFound
	}
	n := r.Manifest().Manifest.NumChunks()
	if int(index) >= n {
		return nil, wire.ErrBadIndex
	}
	if !r.Has(int(index)) {
		return nil, wire.ErrNotFound // without waiting for a slot
	}
	// Wait for an upload slot; ChunkSent frees it once the answer is out.
	peer := h.cfg.conn.RemoteID()
	if !h.cfg.ctr.up.acquire(h.ctx, peer, id, int(index), n, r.Complete(), h.cfg.uploadWait) {
		return nil, wire.ErrBusy
	}
	answered := false
	defer func() {
		if !answered {
			h.cfg.ctr.up.finish(peer, id, int(index), false) // no answer will be sent (an error, or a panic)
		}
	}()
	b, err = r.ReadChunk(int(index), buf)
	if errors.Is(err, store.ErrNotHeld) {
		return nil, wire.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if h.cfg.limiter != nil {
		for left := len(b); left > 0; left -= uploadBurst {
			if err := h.cfg.limiter.WaitN(h.ctx, min(left, uploadBurst)); err != nil {
				return nil, err
			}
		}
	}
	answered = true
	return b, nil
}

// ChunkSent frees the upload slot taken by Chunk and, when wire reports the
// answer written in full, counts it as served. An answer cut off (this node
// stopping, the peer gone or cancelling, a stalled stream) reached nobody,
// so the chunk is not counted as put into the swarm.
func (h *handler) ChunkSent(id release.ManifestID, index uint32, err error) {
	defer h.recovered("ChunkSent", nil)
	sent := err == nil
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The peer did not take the answer at wire's minimum rate.
		h.cfg.ctr.up.slow(h.cfg.conn.RemoteID())
		h.cfg.ctr.slowAnswers.Add(1)
	}
	h.cfg.ctr.up.finish(h.cfg.conn.RemoteID(), id, int(index), sent)
	if !sent {
		h.cfg.logger.Debug("swarm: chunk answer not sent", "peer", h.cfg.conn.RemoteID(), "chunk", index, "err", err)
		return
	}
	size := 0
	if r := h.cfg.store.Get(id); r != nil {
		size = r.Manifest().Manifest.ChunkLen(int(index))
	}
	h.cfg.ctr.uploaded.Add(int64(size))
	h.cfg.use.took.Add(int64(size))
	h.cfg.ctr.served.Add(1)
	h.sys.Root.Send(h.cfg.parent, &Served{Peer: h.cfg.conn.RemoteID(), ID: id, Index: int(index), Bytes: size})
}

// Notify passes a one-way message to the swarm actor and returns once the
// actor has taken it. wire reads no further control message from the peer
// while Notify runs, so a peer sending at line rate waits on QUIC flow
// control instead of filling the swarm's unbounded mailbox: each peer has at
// most one control message queued.
func (h *handler) Notify(from wire.NodeID, m wire.Message) {
	defer h.recovered("Notify", nil)
	taken := make(chan struct{})
	h.cfg.ctr.queue(+1)
	h.sys.Root.Send(h.cfg.parent, &peerMsg{from: from, msg: m, taken: taken})
	select {
	case <-taken:
	case <-h.ctx.Done(): // the peer actor stopped; the swarm may be gone
	}
}
