package simulation

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"

	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// Delays of the slow hostile kinds: a trickler answers each chunk after
// trickleDelay, a liar says "not found" after liarDelay.
const (
	trickleDelay = 15 * time.Second
	liarDelay    = 2 * time.Second
)

// hostile is a peer that is not an engine: a DHT node that announces itself
// in the release's swarm and speaks the wire protocol dishonestly.
type hostile struct {
	kind  HostileKind
	node  *network.Node
	key   ed25519.PrivateKey
	conns []net.PacketConn

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ln     *wire.Listener

	corrupt atomic.Int64 // corrupt chunk answers handed over

	// The abusive kinds (abuse.go).
	attack     Attack
	attacks    *attackCounts
	addr       netip.Addr    // the host's address
	rng        *rand.ChaCha8 // fresh identities of a churner
	dht        *dht.Server   // a fake announcer's DHT client (node is nil)
	dhtTargets []netip.AddrPort
	churnMu    sync.Mutex
	churned    []churnConn // a churner's open connections, oldest first
}

// release is what a hostile peer knows of the release it attacks.
type hostileRelease struct {
	sm    *release.SignedManifest
	data  []byte                // the genuine file
	stale *release.SignedPacket // an old, genuinely signed record
}

// serve starts listening and announces the peer in the release's swarm.
func (h *hostile) serve(rel *hostileRelease) error {
	switch h.kind {
	case Staller, Churner:
		h.wg.Go(func() { h.attackPeers(rel) })
		return nil
	case FakeAnnouncer:
		h.wg.Go(func() { h.fakeAnnounce(rel) })
		return nil
	}
	ln, err := wire.Listen(h.node.Transport(), h.key, wire.Limits{})
	if err != nil {
		return fmt.Errorf("hostile %v: listen: %w", h.kind, err)
	}
	h.ln = ln
	h.wg.Go(func() {
		for {
			c, err := ln.Accept(h.ctx)
			if err != nil {
				return
			}
			h.wg.Go(func() { h.handle(c, rel) })
		}
	})
	h.wg.Go(func() {
		actx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
		defer cancel()
		h.node.Announce(actx, release.SwarmIDOf(rel.sm.ID))
	})
	return nil
}

func (h *hostile) handle(c *wire.Conn, rel *hostileRelease) {
	defer c.Close(wire.CodeNone, "")
	hello := &wire.Hello{}
	if h.kind != StaleGossip {
		// Claim the whole release, whatever is really served.
		hello.Releases = []wire.HaveSet{{ID: rel.sm.ID, Complete: true}}
	}
	ctx := h.ctx
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if c.Send(sctx, hello) != nil {
			return
		}
		if h.kind == StaleGossip {
			c.Send(sctx, &wire.Record{Relay: rel.stale.EncodeRelay()})
		}
	}()
	c.Serve(ctx, &hostileHandler{kind: h.kind, rel: rel, ctx: ctx, corrupt: &h.corrupt})
}

func (h *hostile) stop() {
	h.cancel()
	if h.ln != nil {
		h.ln.Close()
	}
	h.wg.Wait()
	h.churnMu.Lock()
	for _, c := range h.churned {
		c.c.Close(wire.CodeNone, "")
	}
	h.churned = nil
	h.churnMu.Unlock()
	if h.node != nil {
		h.node.Close()
	}
	if h.dht != nil {
		h.dht.Close()
	}
	for _, c := range h.conns {
		c.Close()
	}
}

// hostileHandler answers requests the way its kind misbehaves.
type hostileHandler struct {
	kind    HostileKind
	rel     *hostileRelease
	ctx     context.Context
	corrupt *atomic.Int64
}

func (h *hostileHandler) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-h.ctx.Done():
		return false
	}
}

func (h *hostileHandler) Manifest(id release.ManifestID) ([]byte, error) {
	if id != h.rel.sm.ID || h.kind == StaleGossip {
		return nil, wire.ErrNotFound
	}
	return h.rel.sm.Raw, nil
}

func (h *hostileHandler) Chunk(id release.ManifestID, index uint32, buf []byte) ([]byte, error) {
	m := h.rel.sm.Manifest
	if id != h.rel.sm.ID {
		return nil, wire.ErrNotFound
	}
	if int(index) >= m.NumChunks() {
		return nil, wire.ErrBadIndex
	}
	off := int64(index) * int64(m.ChunkSize)
	n := m.ChunkLen(int(index))
	switch h.kind {
	case Corrupt:
		buf = slices.Grow(buf[:0], n)[:n]
		copy(buf, h.rel.data[off:off+int64(n)])
		for i := 0; i < n; i += 97 {
			buf[i] ^= 0x5a
		}
		h.corrupt.Add(1)
		return buf, nil
	case Trickle:
		if !h.wait(trickleDelay) {
			return nil, wire.ErrBusy
		}
		buf = append(buf[:0], h.rel.data[off:off+int64(n)]...)
		return buf, nil
	case Liar:
		h.wait(liarDelay)
		return nil, wire.ErrNotFound
	}
	return nil, wire.ErrNotFound
}

func (h *hostileHandler) Notify(wire.NodeID, wire.Message) {}
