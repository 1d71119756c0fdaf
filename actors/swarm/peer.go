package swarm

import (
	"context"
	"errors"
	"log/slog"
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
}

// peerActor owns one connection: it serves the peer's requests from the
// store and passes the peer's one-way messages up to the swarm.
type peerActor struct {
	cfg    peerConfig
	out    chan wire.Message
	ctx    context.Context
	cancel context.CancelFunc
}

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
	}
}

func (p *peerActor) start(ctx actor.Context) {
	p.ctx, p.cancel = context.WithCancel(context.Background())
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

// handler answers a peer's requests; it runs on the connection's goroutines.
type handler struct {
	cfg peerConfig
	sys *actor.ActorSystem
	ctx context.Context
}

func (h *handler) Manifest(id release.ManifestID) ([]byte, error) {
	r := h.cfg.store.Get(id)
	if r == nil {
		return nil, wire.ErrNotFound
	}
	return r.Manifest().Raw, nil
}

func (h *handler) Chunk(id release.ManifestID, index uint32, buf []byte) (b []byte, err error) {
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
	if !h.cfg.ctr.up.acquire(h.ctx, id, int(index), n, r.Complete(), h.cfg.uploadWait) {
		return nil, wire.ErrBusy
	}
	defer func() {
		if err != nil {
			h.cfg.ctr.up.finish(id, int(index), false) // no answer will be sent
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
	return b, nil
}

// ChunkSent frees the upload slot taken by Chunk and, when wire reports the
// answer written in full, counts it as served. An answer cut off (this node
// stopping, the peer gone or cancelling, a stalled stream) reached nobody,
// so the chunk is not counted as put into the swarm.
func (h *handler) ChunkSent(id release.ManifestID, index uint32, err error) {
	sent := err == nil
	h.cfg.ctr.up.finish(id, int(index), sent)
	if !sent {
		h.cfg.logger.Debug("swarm: chunk answer not sent", "peer", h.cfg.conn.RemoteID(), "chunk", index, "err", err)
		return
	}
	size := 0
	if r := h.cfg.store.Get(id); r != nil {
		size = r.Manifest().Manifest.ChunkLen(int(index))
	}
	h.cfg.ctr.uploaded.Add(int64(size))
	h.cfg.ctr.served.Add(1)
	h.sys.Root.Send(h.cfg.parent, &Served{Peer: h.cfg.conn.RemoteID(), ID: id, Index: int(index), Bytes: size})
}

// Notify passes a one-way message to the swarm actor and returns once the
// actor has taken it. wire reads no further control message from the peer
// while Notify runs, so a peer sending at line rate waits on QUIC flow
// control instead of filling the swarm's unbounded mailbox: each peer has at
// most one control message queued.
func (h *handler) Notify(from wire.NodeID, m wire.Message) {
	taken := make(chan struct{})
	h.cfg.ctr.queue(+1)
	h.sys.Root.Send(h.cfg.parent, &peerMsg{from: from, msg: m, taken: taken})
	select {
	case <-taken:
	case <-h.ctx.Done(): // the peer actor stopped; the swarm may be gone
	}
}
