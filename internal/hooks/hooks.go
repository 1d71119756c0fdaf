// Package hooks carries the knobs that simulations and tests set on an
// engine and that no program embedding rpe should: in-memory sockets, a
// shared actor system, a clock, shorter DHT and chunk timeouts, fault
// injection, and access to the node's network. They travel in the context
// given to engine.Start, Publish, Fetch and Lookup (With), so the engine's
// public Config shows only what users set. Only packages of this module can
// import it.
//
// The package names no protoactor type (the import rule of
// docs/ARCHITECTURE.md keeps internal/ free of it): a Group holds the shared
// actor system as an opaque value that the engine makes and unwraps.
package hooks

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/rpe-project/engine/network"
)

// Hooks are an engine's test and simulation knobs. The zero value of each
// field means the engine's normal behaviour.
type Hooks struct {
	// DHTConn and QUICConn, when set, are used instead of new UDP sockets
	// (the simulation passes in-memory conns).
	DHTConn, QUICConn net.PacketConn
	// Group, when set, makes every engine started with it share one actor
	// system (hundreds of nodes in one process); default a system per node.
	Group *Group
	// Now is the clock; default time.Now.
	Now func() time.Time
	// QueryResendDelay is the DHT query resend delay; default network's.
	QueryResendDelay time.Duration
	// DHTReadOnly makes the node's DHT read-only (BEP43), as for a node
	// behind NAT; default false.
	DHTReadOnly bool
	// ChunkTimeout bounds one chunk request; default the downloader's (20s).
	ChunkTimeout time.Duration
	// FindInterval is the time between peer lookups while downloading;
	// default the swarm's (2s).
	FindInterval time.Duration
	// Fault, when set, is called by each stage with every message it
	// receives, before handling it; a panic in it crashes the stage.
	Fault func(stage string, msg any)
	// Node, when set, is called with the engine's network node once it is
	// open, before the engine runs (tests read the DHT through it, the
	// simulation bootstraps it again).
	Node func(*network.Node)
}

type key struct{}

// With returns ctx carrying h.
func With(ctx context.Context, h *Hooks) context.Context {
	return context.WithValue(ctx, key{}, h)
}

// From returns the hooks ctx carries, or zero hooks.
func From(ctx context.Context) Hooks {
	if h, _ := ctx.Value(key{}).(*Hooks); h != nil {
		return *h
	}
	return Hooks{}
}

// Group is what engines started with the same hooks share: one actor
// system, made by the first engine that asks and shut down by Close.
type Group struct {
	// Logger receives the shared actor system's own logs; nil is silent.
	Logger *slog.Logger

	mu    sync.Mutex
	v     any
	close func()
}

// Get returns the group's shared value, making it with mk on first use.
// mk returns the value and how to release it.
func (g *Group) Get(mk func(*slog.Logger) (v any, close func())) any {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.v == nil {
		log := g.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		g.v, g.close = mk(log)
	}
	return g.v
}

// Close releases the shared value, if one was made. Every engine of the
// group must be stopped first.
func (g *Group) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.close != nil {
		g.close()
	}
	g.v, g.close = nil, nil
}
