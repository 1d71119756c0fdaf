package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// Errors carried by RecordRefused, matched with errors.Is.
var (
	ErrWrongKey   = errors.New("record signed by another key")
	ErrOlderSeq   = errors.New("record is older than the one held")
	ErrBelowFloor = errors.New("release is below the highest version ever accepted")
	// ErrFloorUnreadable means the version floor could not be read, so no
	// release is reported (fail closed).
	ErrFloorUnreadable = errors.New("version floor unreadable")
)

// Config configures the resolver stage.
type Config struct {
	Node         *network.Node
	PublisherKey release.PublicKey
	Target       release.Target
	// Current is the running version; nil means every version is newer.
	Current *semver.Version
	// StateDir holds the "record" and "highest" files.
	StateDir string
	// PollInterval is the mean time between DHT lookups; zero or negative
	// means the default, 5m.
	PollInterval time.Duration
	// NoPoll turns polling off: the record is looked up only when asked
	// (Poll), and news comes from peers (Offer). For tests of the mesh.
	NoPoll bool
	// FirstPoll is the delay before the first lookup; zero or negative
	// means the default, 1s.
	FirstPoll time.Duration
	// RePutInterval is how often the held record is put again even when the
	// DHT has it; zero or negative means the default, 30m.
	RePutInterval time.Duration
	// Private, when set, makes the node read its private swarm's sealed
	// entry instead of the public one.
	Private *release.Private
	// StaleAfter is how old the newest record held may grow (by its signing
	// time) before the stage reports Stale; zero or negative means never.
	StaleAfter time.Duration
	// Now is the clock for record expiry and staleness; nil means time.Now.
	Now func() time.Time
	// Logger receives the stage's logs; nil is silent.
	Logger *slog.Logger
	// FaultHook, when set, is called with every message; tests inject panics.
	FaultHook func(msg any)
}

func (c *Config) populate() {
	// Props cannot return an error, and a negative interval would make the
	// jitter panic: treat it as unset.
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Minute
	}
	if c.FirstPoll <= 0 {
		c.FirstPoll = time.Second
	}
	if c.RePutInterval <= 0 {
		c.RePutInterval = 30 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

type resolverActor struct {
	cfg             Config
	ctx             context.Context
	cancel          context.CancelFunc
	held            *release.SignedPacket
	reported        release.ManifestID
	reportedRollout int
	polling         bool
	armed           bool // a pollDue timer is running
	misses          int  // lookups in a row that found no record
	quiet           int  // lookups in a row that brought nothing newer than held
	// refused is the last refusal of what a genuine record says for this
	// target, so that one record is refused once, not at every lookup.
	refused refusal
	lastPut time.Time
	// key is the publisher key trusted now (PublisherKey after the
	// rotations followed); keyErr is set when the rotations could not be
	// read, and then no record is trusted.
	key       release.PublicKey
	rotations []*release.Rotation
	keyErr    error
	started   time.Time // by cfg.Now, for Stale before any record
	// staleSeq is the seq of the held record last reported Stale (-1: none
	// held), so that one record is reported once.
	staleSeq int64
}

// Props returns the props that spawn a resolver.
func Props(cfg Config) *actor.Props {
	cfg.populate()
	return actor.PropsFromProducer(func() actor.Actor { return &resolverActor{cfg: cfg, staleSeq: -2} })
}

type refusal struct {
	seq    int64
	reason string
}

type (
	pollDue    struct{}
	pollResult struct {
		p   *release.SignedPacket
		err error
	}
	bootstrapped struct {
		misses int
		err    error
	}
)

func (r *resolverActor) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if r.cfg.FaultHook != nil {
		r.cfg.FaultHook(msg)
	}
	switch m := msg.(type) {
	case *actor.Started:
		r.ctx, r.cancel = context.WithCancel(context.Background())
		r.started = r.now()
		r.loadKey()
		if p, err := state.Record(r.cfg.StateDir); err != nil {
			r.cfg.Logger.Warn("resolver: ignoring held record", "err", err)
		} else if p != nil && p.PublicKey == r.key && r.keyErr == nil {
			r.held = p
			// Gossip it: peers that connect learn it at once (the mesh),
			// which is how a publisher pushes a new record.
			if ctx.Parent() != nil {
				ctx.Send(ctx.Parent(), &RecordUpdated{Packet: p})
			}
			r.consider(ctx, p, "disk")
		}
		if !r.cfg.NoPoll {
			r.after(ctx, r.cfg.FirstPoll)
		}
	case *actor.Stopping, *actor.Restarting:
		r.cancel()
	case *Poll:
		r.poll(ctx)
	case *pollDue:
		r.armed = false
		r.poll(ctx)
	case *pollResult:
		r.polling = false
		before := r.heldSeq()
		r.onPollResult(ctx, m)
		if r.held == nil || r.heldSeq() != before {
			r.quiet = 0
		} else {
			r.quiet++
		}
		r.checkStale(ctx)
		if !r.armed && !r.cfg.NoPoll {
			r.after(ctx, r.jitter(backoff(r.cfg.PollInterval, r.quiet)))
		}
	case *bootstrapped:
		if ctx.Parent() != nil {
			ctx.Send(ctx.Parent(), &Rebootstrapped{Misses: m.misses, Err: m.err})
		}
	case *Offer:
		before := r.heldSeq()
		r.offer(ctx, m.Packet, m.From)
		if r.heldSeq() != before {
			r.quiet = 0
		}
		r.checkStale(ctx)
	case *Accepted:
		if err := state.RaiseHighest(r.cfg.StateDir, m.Version); err != nil {
			r.cfg.Logger.Error("resolver: raise version floor", "err", err)
		}
	}
}

// maxQuietShift bounds the back-off: while lookups bring nothing newer
// than the record held, the interval doubles after each, up to 4 times
// PollInterval. A node that holds a record learns of a newer one from its
// peers' gossip too, so a lookup that keeps finding the same record is
// mostly load: measured in a 200-node simulation, record lookups and the
// DHT serving them were the largest share of the CPU.
const maxQuietShift = 2

// backoff is the poll interval after quiet lookups in a row that brought
// nothing newer: it doubles with each, up to 1<<maxQuietShift times d.
func backoff(d time.Duration, quiet int) time.Duration {
	return d << min(max(quiet, 0), maxQuietShift)
}

// heldSeq is the seq of the held record, or -1.
func (r *resolverActor) heldSeq() int64 {
	if r.held == nil {
		return -1
	}
	return r.held.Seq
}

func (r *resolverActor) jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rand.Int64N(int64(d)/2+1))
}

func (r *resolverActor) after(ctx actor.Context, d time.Duration) {
	r.armed = true
	sys, self, done := ctx.ActorSystem(), ctx.Self(), r.ctx.Done()
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			sys.Root.Send(self, &pollDue{})
		case <-done:
		}
	}()
}

func (r *resolverActor) poll(ctx actor.Context) {
	if r.polling {
		return
	}
	r.polling = true
	sys, self, c, node, pub := ctx.ActorSystem(), ctx.Self(), r.ctx, r.cfg.Node, r.key
	go func() {
		gctx, cancel := context.WithTimeout(c, 30*time.Second)
		defer cancel()
		p, _, err := node.GetRecord(gctx, pub)
		sys.Root.Send(self, &pollResult{p: p, err: err})
	}()
}

func (r *resolverActor) onPollResult(ctx actor.Context, m *pollResult) {
	if m.err != nil && !errors.Is(m.err, network.ErrNotFound) {
		r.cfg.Logger.Debug("resolver: lookup", "err", m.err)
	}
	if m.p != nil {
		r.offer(ctx, m.p, "dht")
		r.misses = 0
	} else {
		r.misses++
		if r.misses%3 == 0 {
			// Lookups keep finding nothing: the routing table may have
			// gone stale (peers left, or it never filled). Bootstrap again,
			// in the background.
			sys, self, node, c, log, misses := ctx.ActorSystem(), ctx.Self(), r.cfg.Node, r.ctx, r.cfg.Logger, r.misses
			go func() {
				bctx, cancel := context.WithTimeout(c, 30*time.Second)
				defer cancel()
				err := node.Bootstrap(bctx)
				if err != nil {
					log.Debug("resolver: re-bootstrap", "misses", misses, "err", err)
				}
				sys.Root.Send(self, &bootstrapped{misses: misses, err: err})
			}()
		}
	}
	// Keep the record alive: put it back when the DHT lost it or holds an
	// older one, and every RePutInterval anyway.
	if r.held != nil && (m.p == nil || m.p.Seq < r.held.Seq || time.Since(r.lastPut) > r.cfg.RePutInterval) {
		r.lastPut = time.Now()
		node, p, c, log := r.cfg.Node, r.held, r.ctx, r.cfg.Logger
		go func() {
			pctx, cancel := context.WithTimeout(c, 30*time.Second)
			defer cancel()
			if err := node.PutRecord(pctx, p); err != nil {
				log.Debug("resolver: re-put", "err", err)
			}
		}()
	}
}

// offer takes a verified-or-not packet from anywhere and acts on it.
func (r *resolverActor) offer(ctx actor.Context, p *release.SignedPacket, from string) {
	if p.PublicKey != r.key {
		r.refuse(ctx, from, fmt.Errorf("%w: %s", ErrWrongKey, p.PublicKey))
		return
	}
	if r.keyErr != nil {
		r.refuse(ctx, from, r.keyErr)
		return
	}
	if err := p.Verify(); err != nil {
		r.refuse(ctx, from, err)
		return
	}
	if r.held != nil && p.Seq < r.held.Seq {
		// An old record replayed; ours is newer. Not an error worth an event
		// when it comes from the DHT (which lags), but gossip is refused.
		err := fmt.Errorf("%w: seq %d < %d", ErrOlderSeq, p.Seq, r.held.Seq)
		if from == "dht" {
			// The re-put after this lookup brings the DHT up to date.
			r.cfg.Logger.Debug("resolver: the DHT serves an older record than the one held", "err", err)
		} else {
			r.refuse(ctx, from, err)
		}
		return
	}
	if (r.held == nil || p.Seq > r.held.Seq) && r.rotate(ctx, p, from) {
		return
	}
	if r.held == nil || p.Seq > r.held.Seq {
		r.held = p
		if err := state.SaveRecord(r.cfg.StateDir, p); err != nil {
			r.cfg.Logger.Warn("resolver: save record", "err", err)
		}
		if ctx.Parent() != nil {
			ctx.Send(ctx.Parent(), &RecordUpdated{Packet: p})
		}
	}
	r.consider(ctx, p, from)
}

func (r *resolverActor) consider(ctx actor.Context, p *release.SignedPacket, from string) {
	e, err := r.lookup(p)
	if err != nil {
		// Signed by the publisher but with no entry for this target, or
		// not in the format: say so once, as silence would hide a
		// misconfigured node or a broken publisher tool.
		r.refuseEntry(ctx, p, from, err)
		return
	}
	if r.cfg.Current != nil && !e.Version.GreaterThan(r.cfg.Current) {
		return
	}
	if r.expired(ctx, p, e, from) {
		return
	}
	floor, err := state.Highest(r.cfg.StateDir)
	if err != nil {
		// Fail closed: without the floor, a replayed old release could pass.
		r.refuseEntry(ctx, p, from, fmt.Errorf("%w: %w", ErrFloorUnreadable, err))
		return
	}
	if floor != nil && e.Version.LessThan(floor) {
		r.refuseEntry(ctx, p, from, fmt.Errorf("%w: %s < %s", ErrBelowFloor, e.Version, floor))
		return
	}
	// The same release is reported again when its rollout percentage
	// changed: a raised percentage brings more nodes in.
	if e.ManifestID == r.reported && e.Rollout == r.reportedRollout {
		return
	}
	r.reported, r.reportedRollout = e.ManifestID, e.Rollout
	if ctx.Parent() != nil {
		ctx.Send(ctx.Parent(), &ReleaseFound{Entry: e, Packet: p})
	}
}

func (r *resolverActor) refuse(ctx actor.Context, from string, err error) {
	r.cfg.Logger.Info("resolver: record refused", "from", from, "err", err)
	if ctx.Parent() != nil {
		ctx.Send(ctx.Parent(), &RecordRefused{From: from, Err: err})
	}
}

// refuseEntry refuses what a genuine record says for this target. The same
// record comes back at every lookup and from every peer that gossips it,
// and the fault is the record's, not theirs: it is refused once.
func (r *resolverActor) refuseEntry(ctx actor.Context, p *release.SignedPacket, from string, err error) {
	k := refusal{seq: p.Seq, reason: err.Error()}
	if k == r.refused {
		r.cfg.Logger.Debug("resolver: record refused again", "from", from, "err", err)
		return
	}
	r.refused = k
	r.refuse(ctx, from, err)
}
