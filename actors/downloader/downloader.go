package downloader

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/actors/swarm"
	"github.com/rpe-project/engine/actors/verifier"
	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// ErrManifestMismatch means a peer answered with bytes that are not the
// manifest the record names.
var ErrManifestMismatch = errors.New("manifest bytes do not hash to the manifest ID")

// ErrFalseClaims means a peer announced chunks and then refused to give
// them, again and again; it is reported to the swarm as misbehaving.
var ErrFalseClaims = errors.New("peer refuses chunks it announced")

// Config configures the downloader stage.
type Config struct {
	Store    *store.Store
	Swarm    *actor.PID
	Verifier *actor.PID
	// StateDir holds download.json, the fetch in progress.
	StateDir string
	// PerPeer is how many chunk requests may be in flight to one peer;
	// default 4.
	PerPeer int
	// ChunkTimeout bounds one chunk request; default 20s.
	ChunkTimeout time.Duration
	// Retry is how long a peer that lacked a chunk is not asked for it again;
	// default 1s.
	Retry time.Duration
	// DownloadRate caps chunk downloads in bytes per second; 0 means
	// unlimited.
	DownloadRate int64
	// Logger receives the stage's logs; nil is silent.
	Logger *slog.Logger
	// FaultHook, when set, is called with every message; tests inject panics.
	FaultHook func(msg any)
}

func (c *Config) populate() {
	if c.PerPeer == 0 {
		c.PerPeer = 4
	}
	if c.ChunkTimeout == 0 {
		c.ChunkTimeout = 20 * time.Second
	}
	if c.Retry == 0 {
		c.Retry = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type counters struct {
	tokens           atomic.Uint64 // check tokens, unique across restarts
	fetched, wasted  atomic.Int64
	chunks, rejected atomic.Int64
}

type dpeer struct {
	conn      *wire.Conn
	inflight  int
	has       map[release.ManifestID][]byte // bitfields learnt from Hello/Have
	complete  map[release.ManifestID]bool
	lacks     map[int]time.Time
	noMan     time.Time // when it last failed to give the manifest
	busyUntil time.Time // it answered busy: not asked before then
	fails     int
	// refuted holds the chunks of release refutedID that the peer claimed
	// (in its Hello, as complete, or in a Have) and then refused to give:
	// they count as not held until it announces them again with a Have, so
	// a peer claiming everything cannot make a chunk look less rare than it
	// is and keep the seeds from being asked for it.
	refuted     map[int]bool
	refutedID   release.ManifestID
	falseClaims int // chunks of refutedID it claimed and refused
}

func (p *dpeer) holds(id release.ManifestID, i int) (known, ok bool) {
	if p.refutedID == id && p.refuted[i] {
		return true, false
	}
	if p.complete[id] {
		return true, true
	}
	bf, k := p.has[id]
	if !k {
		return false, false
	}
	return true, i/8 < len(bf) && bf[i/8]&(0x80>>(i%8)) != 0
}

// request is a chunk asked of one or more peers (more only in the endgame).
type request struct {
	peers   map[wire.NodeID]bool
	started time.Time
}

// refute records that the peer refused chunk i of id, which it claimed,
// and reports how many claims on id it has now been caught out on.
func (p *dpeer) refute(id release.ManifestID, i int) int {
	if p.refutedID != id || p.refuted == nil {
		p.refuted, p.refutedID, p.falseClaims = map[int]bool{}, id, 0
	}
	if !p.refuted[i] {
		p.refuted[i] = true
		p.falseClaims++
	}
	return p.falseClaims
}

// falseClaimLimit is how many chunks a peer may claim and then refuse
// (with a Have each time in between) before it is reported as misbehaving
// and dropped. An honest peer refuses a chunk it announced only when it
// has lost the release (it moved to a newer one, or its copy failed the
// whole-file check), so a few refusals are forgiven.
const falseClaimLimit = 4

// rateBurst is the download limiter's bucket size.
const rateBurst = 64 << 10

// busyBackoff is how long a peer that answered busy is not asked.
const busyBackoff = 500 * time.Millisecond

// seedPerPeer caps the requests in flight to one seed.
const seedPerPeer = 2

// endgameChunks is how few chunks may be missing for the endgame to begin.
const endgameChunks = 2

// endgameAfter is how long a chunk must have been in flight before, with
// nothing else left to ask for, it is asked of a second peer.
const endgameAfter = 1500 * time.Millisecond

type job struct {
	entry      release.Entry
	rel        *store.Release // nil until the manifest is accepted
	manifestIn bool           // a manifest request or check is under way
	inflight   map[int]*request
	verifying  map[int]uint64 // chunk -> token of the check under way
}

type downloaderActor struct {
	cfg   Config
	ctr   *counters
	lim   *rate.Limiter
	peers map[wire.NodeID]*dpeer
	job   *job
	ctx   context.Context
	stop  context.CancelFunc
}

// Props returns the props that spawn a downloader.
func Props(cfg Config) *actor.Props {
	cfg.populate()
	ctr := &counters{}
	var lim *rate.Limiter
	if cfg.DownloadRate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.DownloadRate), rateBurst)
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &downloaderActor{cfg: cfg, ctr: ctr, lim: lim}
	})
}

// internal messages
type (
	manifestArrived struct {
		peer wire.NodeID
		raw  []byte
		err  error
	}
	chunkArrived struct {
		id    release.ManifestID
		peer  wire.NodeID
		index int
		data  []byte
		err   error
	}
	tick struct{}
)

func (d *downloaderActor) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if d.cfg.FaultHook != nil {
		d.cfg.FaultHook(msg)
	}
	switch m := msg.(type) {
	case *actor.Started:
		d.peers = map[wire.NodeID]*dpeer{}
		d.ctx, d.stop = context.WithCancel(context.Background())
		d.resume(ctx)
		d.scheduleTick(ctx)
	case *actor.Stopping, *actor.Restarting:
		d.stop()
	case *Fetch:
		d.fetch(ctx, m.Entry)
	case *swarm.PeerUp:
		if _, ok := d.peers[m.Peer]; !ok {
			d.peers[m.Peer] = &dpeer{conn: m.Conn, has: map[release.ManifestID][]byte{}, complete: map[release.ManifestID]bool{}, lacks: map[int]time.Time{}}
		} else {
			d.peers[m.Peer].conn = m.Conn
		}
		d.schedule(ctx)
	case *swarm.PeerDown:
		delete(d.peers, m.Peer)
	case *swarm.PeerHas:
		d.onHas(ctx, m)
	case *manifestArrived:
		d.onManifest(ctx, m)
	case *verifier.ManifestAccepted:
		d.onManifestAccepted(ctx, m)
	case *verifier.ManifestRejected:
		j := d.job
		if j == nil || j.entry.ManifestID != m.Entry.ManifestID {
			return
		}
		d.cfg.Logger.Warn("downloader: manifest refused", "release", m.Entry.ManifestID.Short(), "err", m.Err)
		d.send(ctx, &ManifestRefused{Entry: m.Entry, Err: m.Err})
		d.send(ctx, &Failed{Entry: m.Entry, Err: m.Err})
		d.clearJob(ctx)
	case *chunkArrived:
		d.onChunk(ctx, m)
	case *verifier.ChunkVerified:
		d.onVerified(ctx, m)
	case *verifier.ChunkRejected:
		d.onRejected(ctx, m)
	case *verifier.FileVerified:
		j := d.job
		if j == nil || j.rel == nil || j.rel.ID() != m.Manifest.ID {
			return
		}
		ctx.Send(d.cfg.Swarm, &swarm.Leave{ID: m.Manifest.ID})
		d.clearJob(ctx)
		d.send(ctx, &Completed{Manifest: m.Manifest, Path: j.rel.Path()})
	case *verifier.FileRejected:
		j := d.job
		if j == nil || j.rel == nil || j.rel.ID() != m.Manifest.ID {
			return
		}
		d.cfg.Logger.Warn("downloader: whole file refused, starting over", "release", m.Manifest.ID.Short(), "err", m.Err)
		j.rel.Reset()
		d.schedule(ctx)
	case *VerifierRestarted:
		d.recheck(ctx)
	case *SwarmRestarted:
		d.peers = map[wire.NodeID]*dpeer{}
		if d.job != nil {
			d.job.inflight = map[int]*request{}
			d.job.manifestIn = false
			ctx.Request(d.cfg.Swarm, &swarm.Join{ID: d.job.entry.ManifestID})
		}
	case *tick:
		d.schedule(ctx)
		d.scheduleTick(ctx)
		d.logState()
	case *Stats:
		ctx.Respond(&StatsReply{
			FetchedBytes: d.ctr.fetched.Load(), WastedBytes: d.ctr.wasted.Load(),
			ChunksFetched: d.ctr.chunks.Load(), ChunksRejected: d.ctr.rejected.Load(),
		})
	}
}

// logState logs what the fetch is waiting on, at debug level.
func (d *downloaderActor) logState() {
	j := d.job
	if j == nil || !d.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	busy, known, seeds := 0, 0, 0
	for _, p := range d.peers {
		busy += p.inflight
		if p.complete[j.entry.ManifestID] {
			seeds++
		} else if _, ok := p.has[j.entry.ManifestID]; ok {
			known++
		}
	}
	verified, total := 0, 0
	if j.rel != nil {
		verified, total = j.rel.Count(), j.rel.Manifest().Manifest.NumChunks()
	}
	d.cfg.Logger.Debug("downloader: state", "release", j.entry.ManifestID.Short(),
		"manifest", j.rel != nil, "manifest_asked", j.manifestIn,
		"verified", verified, "total", total,
		"inflight", len(j.inflight), "verifying", len(j.verifying), "peers", len(d.peers),
		"seeds", seeds, "known", known, "requests", busy)
}

func (d *downloaderActor) send(ctx actor.Context, m any) {
	if ctx.Parent() != nil {
		ctx.Send(ctx.Parent(), m)
	}
}

func (d *downloaderActor) scheduleTick(ctx actor.Context) {
	sys, self, done := ctx.ActorSystem(), ctx.Self(), d.ctx.Done()
	go func() {
		t := time.NewTimer(d.cfg.Retry)
		defer t.Stop()
		select {
		case <-t.C:
			sys.Root.Send(self, &tick{})
		case <-done:
		}
	}()
}

// jobFile is download.json: the fetch in progress, so a restart resumes it.
type jobFile struct {
	App, Channel, Platform string
	Version                string
	ManifestID             string
	Size                   int64
}

func (d *downloaderActor) jobPath() string { return filepath.Join(d.cfg.StateDir, "download.json") }

func (d *downloaderActor) resume(ctx actor.Context) {
	b, err := os.ReadFile(d.jobPath())
	if err != nil {
		return
	}
	var jf jobFile
	if err := json.Unmarshal(b, &jf); err != nil {
		d.cfg.Logger.Warn("downloader: ignoring damaged download.json", "err", err)
		os.Remove(d.jobPath())
		return
	}
	id, err := release.ParseManifestID(jf.ManifestID)
	if err != nil {
		os.Remove(d.jobPath())
		return
	}
	v, err := release.ParseVersion(jf.Version)
	if err != nil {
		os.Remove(d.jobPath())
		return
	}
	e := release.Entry{App: jf.App, Channel: jf.Channel, Platform: jf.Platform, Version: v, ManifestID: id, Size: jf.Size}
	d.cfg.Logger.Debug("downloader: resuming", "release", id.Short())
	d.fetch(ctx, e)
}

func (d *downloaderActor) fetch(ctx actor.Context, e release.Entry) {
	if d.job != nil && d.job.entry.ManifestID == e.ManifestID {
		ctx.Request(d.cfg.Swarm, &swarm.Join{ID: e.ManifestID})
		return
	}
	if d.job != nil {
		// A newer release replaces the one being fetched.
		ctx.Send(d.cfg.Swarm, &swarm.Leave{ID: d.job.entry.ManifestID})
		if d.job.rel != nil && !d.job.rel.Complete() {
			d.cfg.Store.Remove(d.job.entry.ManifestID)
		}
	}
	jf := jobFile{App: e.App, Channel: e.Channel, Platform: e.Platform, ManifestID: e.ManifestID.String(), Size: e.Size}
	if e.Version != nil {
		jf.Version = e.Version.String()
	}
	b, _ := json.Marshal(jf)
	if err := state.WriteAtomic(d.jobPath(), b); err != nil {
		d.send(ctx, &Failed{Entry: e, Err: fmt.Errorf("save download state: %w", err)})
		return
	}
	d.job = &job{entry: e, inflight: map[int]*request{}, verifying: map[int]uint64{}}
	if r := d.cfg.Store.Get(e.ManifestID); r != nil {
		// A release already on disk passes the same manifest checks as one
		// from a peer: the running version or the floor may have moved, or
		// the manifest expired, since it was stored.
		d.job.manifestIn = true
		ctx.Request(d.cfg.Verifier, &verifier.CheckManifest{Raw: r.Manifest().Raw, Entry: e})
	}
	ctx.Request(d.cfg.Swarm, &swarm.Join{ID: e.ManifestID})
	d.schedule(ctx)
}

func (d *downloaderActor) clearJob(ctx actor.Context) {
	d.job = nil
	os.Remove(d.jobPath())
}

func (d *downloaderActor) onHas(ctx actor.Context, m *swarm.PeerHas) {
	p := d.peers[m.Peer]
	j := d.job
	if p == nil || j == nil || j.entry.ManifestID != m.ID {
		return // only the release being fetched is tracked
	}
	switch {
	case m.Complete:
		p.complete[m.ID] = true
	case m.Bitfield != nil:
		if j.rel != nil && len(m.Bitfield) != (j.rel.Manifest().Manifest.NumChunks()+7)/8 {
			return // a bitfield of the wrong length says nothing usable
		}
		p.has[m.ID] = append([]byte(nil), m.Bitfield...)
	case m.Index >= 0:
		// Before the manifest is known the chunk count is not: cap by the
		// most a manifest may declare.
		limit := maxChunks
		if j.rel != nil {
			limit = j.rel.Manifest().Manifest.NumChunks()
		}
		if m.Index >= limit {
			return
		}
		bf := p.has[m.ID]
		if need := m.Index/8 + 1; len(bf) < need {
			bf = append(bf, make([]byte, need-len(bf))...)
		}
		bf[m.Index/8] |= 0x80 >> (m.Index % 8)
		p.has[m.ID] = bf
		delete(p.lacks, m.Index)
		if p.refutedID == m.ID {
			// A new announcement of this chunk is believed again (the
			// count of false claims stays).
			delete(p.refuted, m.Index)
		}
	}
	d.schedule(ctx)
}

// maxChunks bounds a chunk index before the manifest is known: the size
// limit over the smallest chunk size.
const maxChunks = int(release.DefaultMaxSize / release.MinChunkSize)

// schedule fills every peer's request slots.
func (d *downloaderActor) schedule(ctx actor.Context) {
	j := d.job
	if j == nil || len(d.peers) == 0 {
		return
	}
	id := j.entry.ManifestID
	now := time.Now()
	if j.rel == nil {
		if j.manifestIn {
			return
		}
		// Ask a peer known to hold the release first, else any peer.
		var best *dpeer
		var bestID wire.NodeID
		for pid, p := range d.peers {
			if now.Sub(p.noMan) < d.cfg.Retry {
				continue
			}
			known, ok := p.holds(id, 0)
			if best == nil || (known && ok) {
				best, bestID = p, pid
				if known && ok {
					break
				}
			}
		}
		if best == nil {
			return
		}
		j.manifestIn = true
		d.getManifest(ctx, bestID, best.conn, id)
		return
	}
	missing := j.rel.Missing()
	if len(missing) == 0 {
		return
	}
	// Rarity of each wanted chunk: how many partial holders (not seeds)
	// could serve it now. Seeds (the publisher, finished nodes) are asked
	// only for chunks no partial holder can give, and only a few at a time,
	// so the publisher's upload goes to chunks the swarm lacks (as
	// BitTorrent's super-seeding does) instead of to copies of chunks that
	// peers could exchange.
	type cand struct{ index, rarity int }
	var cands []cand
	for _, i := range missing {
		if _, checking := j.verifying[i]; checking {
			continue
		}
		if _, busy := j.inflight[i]; busy {
			continue
		}
		n := 0
		for _, p := range d.peers {
			if p.complete[id] {
				continue
			}
			if t, ok := p.lacks[i]; ok && now.Sub(t) < d.cfg.Retry {
				continue
			}
			if _, ok := p.holds(id, i); ok {
				n++
			}
		}
		cands = append(cands, cand{i, n})
	}
	if len(cands) == 0 {
		if len(missing) <= endgameChunks {
			d.endgame(ctx, now)
		}
		return
	}
	rand.Shuffle(len(cands), func(a, b int) { cands[a], cands[b] = cands[b], cands[a] })
	// Rarest first; the shuffle breaks ties differently on every node.
	slices.SortStableFunc(cands, func(a, b cand) int { return a.rarity - b.rarity })
	// Partial holders first, then seeds.
	order := make([]wire.NodeID, 0, len(d.peers))
	for pid, p := range d.peers {
		if !p.complete[id] {
			order = append(order, pid)
		}
	}
	for pid, p := range d.peers {
		if p.complete[id] {
			order = append(order, pid)
		}
	}
	taken := map[int]bool{}
	for _, pid := range order {
		p := d.peers[pid]
		if now.Before(p.busyUntil) {
			continue
		}
		seed := p.complete[id]
		limit := d.cfg.PerPeer
		if seed {
			limit = min(limit, seedPerPeer)
		}
		for p.inflight < limit {
			pick := -1
			for _, c := range cands {
				if taken[c.index] || (seed && c.rarity > 0) {
					continue
				}
				if t, ok := p.lacks[c.index]; ok && now.Sub(t) < d.cfg.Retry {
					continue
				}
				if known, ok := p.holds(id, c.index); known && !ok {
					continue
				}
				pick = c.index
				break
			}
			if pick < 0 {
				break
			}
			taken[pick] = true
			p.inflight++
			j.inflight[pick] = &request{peers: map[wire.NodeID]bool{pid: true}, started: now}
			d.getChunk(ctx, pid, p.conn, j.rel, pick)
		}
	}
}

// endgame asks a second peer for chunks that have been in flight too long
// once nothing else is left to ask for, so one slow peer cannot hold up the
// end of a download. The loser's bytes are counted as wasted.
func (d *downloaderActor) endgame(ctx actor.Context, now time.Time) {
	j := d.job
	id := j.entry.ManifestID
	for pid, p := range d.peers {
		if p.inflight >= d.cfg.PerPeer {
			continue
		}
		for i, r := range j.inflight {
			if _, checking := j.verifying[i]; checking || len(r.peers) >= 2 || r.peers[pid] || now.Sub(r.started) < endgameAfter {
				continue
			}
			if known, ok := p.holds(id, i); known && !ok {
				continue
			}
			if t, ok := p.lacks[i]; ok && now.Sub(t) < d.cfg.Retry {
				continue
			}
			r.peers[pid] = true
			p.inflight++
			d.getChunk(ctx, pid, p.conn, j.rel, i)
			break
		}
	}
}

func (d *downloaderActor) getManifest(ctx actor.Context, peer wire.NodeID, conn *wire.Conn, id release.ManifestID) {
	sys, self, c, timeout := ctx.ActorSystem(), ctx.Self(), d.ctx, d.cfg.ChunkTimeout
	go func() {
		rctx, cancel := context.WithTimeout(c, timeout)
		defer cancel()
		raw, err := conn.GetManifest(rctx, id)
		sys.Root.Send(self, &manifestArrived{peer: peer, raw: raw, err: err})
	}()
}

func (d *downloaderActor) getChunk(ctx actor.Context, peer wire.NodeID, conn *wire.Conn, rel *store.Release, i int) {
	sys, self, c, timeout := ctx.ActorSystem(), ctx.Self(), d.ctx, d.cfg.ChunkTimeout
	id, n, lim := rel.ID(), rel.Manifest().Manifest.ChunkLen(i), d.lim
	go func() {
		// Pay for the chunk before asking, in pieces the bucket can hold.
		for left := n; lim != nil && left > 0; left -= rateBurst {
			if err := lim.WaitN(c, min(left, rateBurst)); err != nil {
				sys.Root.Send(self, &chunkArrived{id: id, peer: peer, index: i, err: err})
				return
			}
		}
		rctx, cancel := context.WithTimeout(c, timeout)
		defer cancel()
		buf, err := conn.FetchChunk(rctx, id, uint32(i), n) // allocates only for a chunk
		sys.Root.Send(self, &chunkArrived{id: id, peer: peer, index: i, data: buf, err: err})
	}()
}

func (d *downloaderActor) onManifest(ctx actor.Context, m *manifestArrived) {
	j := d.job
	if j == nil || j.rel != nil {
		return
	}
	p := d.peers[m.peer]
	if m.err != nil {
		j.manifestIn = false
		if p != nil {
			p.noMan = time.Now()
		}
		d.cfg.Logger.Debug("downloader: manifest request", "peer", m.peer, "err", m.err)
		return
	}
	if sha256.Sum256(m.raw) != j.entry.ManifestID {
		j.manifestIn = false
		ctx.Send(d.cfg.Swarm, &swarm.Misbehaved{Peer: m.peer, Reason: ErrManifestMismatch})
		delete(d.peers, m.peer)
		return
	}
	ctx.Request(d.cfg.Verifier, &verifier.CheckManifest{Raw: m.raw, Entry: j.entry, Peer: m.peer})
}

func (d *downloaderActor) onManifestAccepted(ctx actor.Context, m *verifier.ManifestAccepted) {
	j := d.job
	if j == nil || j.entry.ManifestID != m.Manifest.ID || j.rel != nil {
		return
	}
	j.manifestIn = false
	rel, err := d.cfg.Store.Add(m.Manifest)
	if err != nil {
		d.send(ctx, &Failed{Entry: j.entry, Err: err})
		d.clearJob(ctx)
		return
	}
	j.rel = rel
	d.send(ctx, &ManifestAccepted{Manifest: m.Manifest})
	if rel.Complete() {
		ctx.Request(d.cfg.Verifier, &verifier.Finish{Manifest: rel.Manifest(), StagingPath: rel.Path()})
		return
	}
	d.schedule(ctx)
}

func (d *downloaderActor) onChunk(ctx actor.Context, m *chunkArrived) {
	p := d.peers[m.peer]
	if p != nil && p.inflight > 0 {
		p.inflight--
	}
	j := d.job
	if j == nil || j.rel == nil || j.rel.ID() != m.id {
		return
	}
	if r := j.inflight[m.index]; r != nil && r.peers[m.peer] {
		delete(r.peers, m.peer)
		if len(r.peers) == 0 || m.err == nil {
			delete(j.inflight, m.index)
		}
	}
	if m.err != nil {
		refused := errors.Is(m.err, wire.ErrNotFound) || errors.Is(m.err, wire.ErrBadIndex) || errors.Is(m.err, wire.ErrInternal)
		if p != nil && refused {
			if _, claimed := p.holds(m.id, m.index); claimed {
				n := p.refute(m.id, m.index)
				d.cfg.Logger.Debug("downloader: peer refused a chunk it claimed", "chunk", m.index, "peer", m.peer, "false_claims", n, "err", m.err)
				if n >= falseClaimLimit {
					d.cfg.Logger.Info("downloader: dropping peer for false claims", "peer", m.peer, "false_claims", n)
					ctx.Send(d.cfg.Swarm, &swarm.Misbehaved{Peer: m.peer, Reason: fmt.Errorf("%w: refused %d chunks it claimed", ErrFalseClaims, n)})
					delete(d.peers, m.peer)
					p = nil
				}
			}
		}
		if p != nil {
			if refused {
				p.lacks[m.index] = time.Now()
				if _, known := p.has[m.id]; !known && !p.complete[m.id] {
					// A peer whose holdings were unknown (it had nothing
					// when it said Hello) holds nothing but what it
					// announces from now on: without this, every such
					// peer was asked for every chunk every Retry, tens of
					// thousands of requests a second in a 100-node swarm.
					p.has[m.id] = []byte{}
				}
			} else if errors.Is(m.err, wire.ErrBusy) {
				// Its upload slots are full: leave the whole peer alone a
				// moment and ask others, instead of queueing more there.
				p.busyUntil = time.Now().Add(busyBackoff)
			} else {
				p.fails++
				p.lacks[m.index] = time.Now()
			}
		}
		d.cfg.Logger.Debug("downloader: chunk request", "chunk", m.index, "peer", m.peer, "err", m.err)
		d.schedule(ctx)
		return
	}
	d.ctr.fetched.Add(int64(len(m.data)))
	d.ctr.chunks.Add(1)
	if _, checking := j.verifying[m.index]; checking || j.rel.Has(m.index) {
		d.ctr.wasted.Add(int64(len(m.data)))
		d.schedule(ctx)
		return
	}
	if err := j.rel.WriteChunk(m.index, m.data); err != nil {
		d.send(ctx, &Failed{Entry: j.entry, Err: err})
		d.schedule(ctx)
		return
	}
	tok := d.ctr.tokens.Add(1)
	j.verifying[m.index] = tok
	ctx.Request(d.cfg.Verifier, &verifier.CheckChunk{
		Manifest: j.rel.Manifest(), StagingPath: j.rel.Path(), Index: m.index, Data: m.data, Peer: m.peer, Token: tok,
	})
	d.schedule(ctx)
}

// recheck asks the verifier again for every check that was under way,
// reading the written chunks back rather than fetching them again.
func (d *downloaderActor) recheck(ctx actor.Context) {
	j := d.job
	if j == nil {
		return
	}
	if j.rel == nil {
		j.manifestIn = false
		d.schedule(ctx)
		return
	}
	for i := range j.verifying {
		data, err := j.rel.ReadWritten(i)
		if err != nil {
			delete(j.verifying, i)
			continue
		}
		tok := d.ctr.tokens.Add(1)
		j.verifying[i] = tok
		ctx.Request(d.cfg.Verifier, &verifier.CheckChunk{
			Manifest: j.rel.Manifest(), StagingPath: j.rel.Path(), Index: i, Data: data, Token: tok,
		})
	}
	if j.rel.Complete() {
		ctx.Request(d.cfg.Verifier, &verifier.Finish{Manifest: j.rel.Manifest(), StagingPath: j.rel.Path()})
	}
	d.schedule(ctx)
}

func (d *downloaderActor) onVerified(ctx actor.Context, m *verifier.ChunkVerified) {
	j := d.job
	if j == nil || j.rel == nil || j.rel.ID() != m.ID {
		return
	}
	if tok, ok := j.verifying[m.Index]; !ok || tok != m.Token {
		// A stale answer (from before a restart, or for bytes since
		// replaced): the bytes on disk may not be the ones it checked.
		return
	}
	delete(j.verifying, m.Index)
	if err := j.rel.MarkVerified(m.Index); err != nil {
		d.send(ctx, &Failed{Entry: j.entry, Err: err})
		return
	}
	ctx.Send(d.cfg.Swarm, &swarm.Verified{ID: m.ID, Index: m.Index})
	man := j.rel.Manifest().Manifest
	n := j.rel.Count()
	var bytes int64
	if n == man.NumChunks() {
		bytes = man.Size
	} else {
		bytes = int64(n) * int64(man.ChunkSize)
	}
	d.send(ctx, &Progress{ID: m.ID, Verified: n, Total: man.NumChunks(), Bytes: bytes, Size: man.Size, Peers: len(d.peers),
		Fetched: d.ctr.fetched.Load(), Wasted: d.ctr.wasted.Load()})
	if n == man.NumChunks() {
		ctx.Request(d.cfg.Verifier, &verifier.Finish{Manifest: j.rel.Manifest(), StagingPath: j.rel.Path()})
		return
	}
	d.schedule(ctx)
}

func (d *downloaderActor) onRejected(ctx actor.Context, m *verifier.ChunkRejected) {
	d.ctr.wasted.Add(int64(m.Size))
	d.ctr.rejected.Add(1)
	peer := m.Peer
	if j := d.job; j != nil && j.rel != nil && j.rel.ID() == m.ID {
		if tok, ok := j.verifying[m.Index]; ok && tok == m.Token {
			delete(j.verifying, m.Index)
		}
	}
	if peer.IsZero() {
		// A re-check of bytes read back from disk (after a verifier
		// restart): nobody to blame; the chunk is fetched again.
		d.schedule(ctx)
		return
	}
	d.cfg.Logger.Warn("downloader: chunk refused", "chunk", m.Index, "peer", peer, "err", m.Err)
	d.send(ctx, &ChunkRefused{ID: m.ID, Index: m.Index, Peer: peer, Err: m.Err})
	ctx.Send(d.cfg.Swarm, &swarm.Misbehaved{Peer: peer, Reason: m.Err})
	delete(d.peers, peer)
	d.schedule(ctx)
}
