package downloader

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/actors/swarm"
	"github.com/rpe-project/engine/actors/verifier"
	"github.com/rpe-project/engine/internal/plan"
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
	// PerPeer caps the chunk requests in flight to one peer; default the
	// planner's (16). Below the cap each peer's pipeline is sized to its
	// measured rate and request time (internal/plan).
	PerPeer int
	// ChunkTimeout bounds one chunk request; default 20s.
	ChunkTimeout time.Duration
	// Retry is how long a peer that lacked a chunk is not asked for it again;
	// default 1s.
	Retry time.Duration
	// CheckTimeout is how long the verifier may leave every request
	// unanswered before they are all asked again (it lost them in a
	// restart); default 10s.
	CheckTimeout time.Duration
	// DownloadRate caps chunk downloads in bytes per second; 0 means
	// unlimited.
	DownloadRate int64
	// Logger receives the stage's logs; nil is silent.
	Logger *slog.Logger
	// FaultHook, when set, is called with every message; tests inject panics.
	FaultHook func(msg any)
	// Reuse, when set, is called once a release's manifest is accepted and
	// before any chunk is asked of a peer: it copies the chunks it finds
	// locally (the installed file) into rel, checked and marked verified,
	// and returns their indices and bytes. They are announced and served
	// like downloaded chunks, and reported as Reused.
	Reuse func(rel *store.Release) (chunks []int, bytes int64)
}

func (c *Config) populate() {
	if c.ChunkTimeout == 0 {
		c.ChunkTimeout = 20 * time.Second
	}
	if c.Retry == 0 {
		c.Retry = time.Second
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type counters struct {
	started          atomic.Bool   // set by the first incarnation's Started
	tokens           atomic.Uint64 // check tokens, unique across restarts
	fetched, wasted  atomic.Int64
	chunks, rejected atomic.Int64
}

// dpeer is what the downloader keeps of a peer outside the plan: what it
// announced (so the plan of a release whose manifest comes later starts
// from it, and the manifest is asked of a holder) and when it last failed
// to give the manifest. Which chunks to ask of it, its claims refuted, its
// requests and its rate live in the job's plan.
type dpeer struct {
	has      map[release.ManifestID][]byte // bitfields learnt from Hello/Have
	complete map[release.ManifestID]bool
	noMan    time.Time // when it last failed to give the manifest
}

func (p *dpeer) holds(id release.ManifestID, i int) (known, ok bool) {
	if p.complete[id] {
		return true, true
	}
	bf, k := p.has[id]
	if !k {
		return false, false
	}
	return true, i/8 < len(bf) && bf[i/8]&(0x80>>(i%8)) != 0
}

// falseClaimLimit is how many chunks a peer may claim and then refuse
// (with a Have each time in between) before it is reported as misbehaving
// and dropped. An honest peer refuses a chunk it announced only when it
// has lost the release (it moved to a newer one, or its copy failed the
// whole-file check), so a few refusals are forgiven.
const falseClaimLimit = 4

// rateBurst is the download limiter's bucket size.
const rateBurst = 64 << 10

type job struct {
	entry      release.Entry
	rel        *store.Release // nil until the manifest is accepted
	manifestIn bool           // a manifest request or check is under way
	plan       *plan.State    // which chunk of whom; nil until rel is set
	verifying  map[int]uint64 // chunk -> token of the check under way
	// manifestCheck and finishing: a CheckManifest or a Finish is with the
	// verifier.
	manifestCheck, finishing bool
}

type downloaderActor struct {
	// verifierAt is when the verifier was last asked or last answered,
	// and joinedAt when the swarm was last asked to join the release: a
	// restarted verifier or swarm has lost what it was asked, and the
	// downloader asks again once they stay silent (see heal).
	verifierAt, joinedAt time.Time
	cfg                  Config
	ctr                  *counters
	lim                  *rate.Limiter
	peers                map[wire.NodeID]*dpeer
	job                  *job
	ctx                  context.Context
	stop                 context.CancelFunc
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
type tick struct{}

// chunkArrived is the answer to a chunk request, from the swarm's
// ChunkArrived (data) or ChunkFailed (err).
type chunkArrived struct {
	id    release.ManifestID
	peer  wire.NodeID
	index int
	data  []byte
	err   error
}

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
		if d.ctr.started.Swap(true) {
			// Restarted: a Fetch being handled was lost with the failed
			// incarnation; ask for the release wanted now.
			var have release.ManifestID
			if d.job != nil {
				have = d.job.entry.ManifestID
			}
			d.send(ctx, &ResendFetch{Fetching: have})
		}
		d.scheduleTick(ctx)
	case *actor.Stopping, *actor.Restarting:
		d.stop()
	case *Fetch:
		d.fetch(ctx, m.Entry)
	case *swarm.PeerUp:
		if _, ok := d.peers[m.Peer]; !ok {
			d.peers[m.Peer] = &dpeer{has: map[release.ManifestID][]byte{}, complete: map[release.ManifestID]bool{}}
			if j := d.job; j != nil && j.plan != nil {
				j.plan.AddPeer(m.Peer)
			}
		}
		d.schedule(ctx)
	case *swarm.PeerDown:
		d.peerDown(ctx, m.Peer)
	case *swarm.PeerHas:
		d.onHas(ctx, m)
	case *swarm.ManifestArrived:
		d.onManifest(ctx, m)
	case *verifier.ManifestAccepted:
		d.verifierAt = time.Now()
		if d.job != nil {
			d.job.manifestCheck = false
		}
		d.onManifestAccepted(ctx, m)
	case *verifier.ManifestRejected:
		d.verifierAt = time.Now()
		j := d.job
		if j == nil || j.entry.ManifestID != m.Entry.ManifestID {
			return
		}
		d.cfg.Logger.Warn("downloader: manifest refused", "release", m.Entry.ManifestID.Short(), "err", m.Err)
		d.send(ctx, &ManifestRefused{Entry: m.Entry, Err: m.Err})
		d.send(ctx, &Failed{Entry: m.Entry, Err: m.Err})
		d.clearJob(ctx)
	case *swarm.ChunkArrived:
		d.onChunk(ctx, &chunkArrived{id: m.ID, peer: m.Peer, index: m.Index, data: m.Data})
	case *swarm.ChunkFailed:
		d.onChunk(ctx, &chunkArrived{id: m.ID, peer: m.Peer, index: m.Index, err: m.Err})
	case *verifier.ChunkVerified:
		d.verifierAt = time.Now()
		d.onVerified(ctx, m)
	case *verifier.ChunkRejected:
		d.verifierAt = time.Now()
		d.onRejected(ctx, m)
	case *verifier.FileVerified:
		d.verifierAt = time.Now()
		j := d.job
		if j == nil || j.rel == nil || j.rel.ID() != m.Manifest.ID {
			return
		}
		ctx.Send(d.cfg.Swarm, &swarm.Leave{ID: m.Manifest.ID})
		d.clearJob(ctx)
		d.send(ctx, &Completed{Manifest: m.Manifest, Path: j.rel.Path()})
	case *verifier.FileRejected:
		d.verifierAt = time.Now()
		j := d.job
		if j == nil || j.rel == nil || j.rel.ID() != m.Manifest.ID {
			return
		}
		j.finishing = false
		d.cfg.Logger.Warn("downloader: whole file refused, starting over", "release", m.Manifest.ID.Short(), "err", m.Err)
		j.rel.Reset()
		d.newPlan()
		d.schedule(ctx)
	case *tick:
		d.heal(ctx)
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
	known, seeds := 0, 0
	for _, p := range d.peers {
		if p.complete[j.entry.ManifestID] {
			seeds++
		} else if _, ok := p.has[j.entry.ManifestID]; ok {
			known++
		}
	}
	verified, total, inflight := 0, 0, 0
	if j.plan != nil {
		inflight = j.plan.InFlight()
	}
	if j.rel != nil {
		verified, total = j.rel.Count(), j.rel.Manifest().Manifest.NumChunks()
	}
	d.cfg.Logger.Debug("downloader: state", "release", j.entry.ManifestID.Short(),
		"manifest", j.rel != nil, "manifest_asked", j.manifestIn,
		"verified", verified, "total", total,
		"inflight", inflight, "verifying", len(j.verifying), "peers", len(d.peers),
		"seeds", seeds, "known", known)
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
		d.join(ctx, &swarm.Join{ID: e.ManifestID})
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
	d.job = &job{entry: e, verifying: map[int]uint64{}}
	if r := d.cfg.Store.Get(e.ManifestID); r != nil {
		// A release already on disk passes the same manifest checks as one
		// from a peer: the running version or the floor may have moved, or
		// the manifest expired, since it was stored.
		d.job.manifestIn = true
		d.askVerifier(ctx, &verifier.CheckManifest{Raw: r.Manifest().Raw, Entry: e})
	}
	d.join(ctx, &swarm.Join{ID: e.ManifestID})
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
		if j.plan != nil {
			j.plan.Bitfield(m.Peer, nil, true)
		}
	case m.Bitfield != nil:
		if j.rel != nil && len(m.Bitfield) != (j.rel.Manifest().Manifest.NumChunks()+7)/8 {
			return // a bitfield of the wrong length says nothing usable
		}
		p.has[m.ID] = append([]byte(nil), m.Bitfield...)
		if j.plan != nil {
			j.plan.Bitfield(m.Peer, m.Bitfield, false)
		}
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
		if j.plan != nil {
			// A new announcement is believed again, even of a chunk the
			// peer refused (its count of false claims stays).
			j.plan.Have(m.Peer, m.Index)
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
		ctx.Request(d.cfg.Swarm, &swarm.GetManifest{Peer: bestID, ID: id, Timeout: d.cfg.ChunkTimeout})
		return
	}
	for _, r := range j.plan.Plan(now) {
		d.getChunk(ctx, r.Peer, j.rel, r.Index)
	}
}

// newPlan makes the job's plan from the store's chunks (verified or being
// checked count as done) and what the peers announced.
func (d *downloaderActor) newPlan() {
	j := d.job
	if j == nil || j.rel == nil {
		return
	}
	man := j.rel.Manifest().Manifest
	n, id := man.NumChunks(), j.rel.ID()
	j.plan = plan.New(plan.Config{
		Chunks: n, ChunkSize: man.ChunkSize, PerPeer: d.cfg.PerPeer, Retry: d.cfg.Retry,
	}, func(i int) bool {
		_, checking := j.verifying[i]
		return checking || j.rel.Has(i)
	})
	for pid, p := range d.peers {
		j.plan.AddPeer(pid)
		switch bf, ok := p.has[id]; {
		case p.complete[id]:
			j.plan.Bitfield(pid, nil, true)
		case ok:
			// Haves before the manifest grew a bitfield only as far as
			// they reached: pad it to the release's length.
			full := make([]byte, (n+7)/8)
			copy(full, bf)
			j.plan.Bitfield(pid, full, false)
		}
	}
}

// getChunk asks the swarm for chunk i from peer; the answer comes back as
// ChunkArrived or ChunkFailed. With a download rate cap the chunk is paid
// for first, in pieces the bucket can hold.
func (d *downloaderActor) getChunk(ctx actor.Context, peer wire.NodeID, rel *store.Release, i int) {
	req := &swarm.GetChunk{Peer: peer, ID: rel.ID(), Index: i, Size: rel.Manifest().Manifest.ChunkLen(i), Timeout: d.cfg.ChunkTimeout}
	if d.lim == nil {
		ctx.Request(d.cfg.Swarm, req)
		return
	}
	sys, self, c, lim, sw := ctx.ActorSystem(), ctx.Self(), d.ctx, d.lim, d.cfg.Swarm
	go func() {
		for left := req.Size; left > 0; left -= rateBurst {
			if err := lim.WaitN(c, min(left, rateBurst)); err != nil {
				sys.Root.Send(self, &swarm.ChunkFailed{Peer: peer, ID: req.ID, Index: i, Err: err})
				return
			}
		}
		sys.Root.RequestWithCustomSender(sw, req, self)
	}()
}

// peerDown forgets a peer, and its requests: an answer that still comes
// is taken, but the chunks are free to be asked of others at once.
func (d *downloaderActor) peerDown(ctx actor.Context, peer wire.NodeID) {
	d.dropPeer(peer)
	d.schedule(ctx)
}

// dropPeer forgets a peer here and in the plan.
func (d *downloaderActor) dropPeer(peer wire.NodeID) {
	delete(d.peers, peer)
	if j := d.job; j != nil && j.plan != nil {
		j.plan.RemovePeer(peer)
	}
}

func (d *downloaderActor) onManifest(ctx actor.Context, m *swarm.ManifestArrived) {
	j := d.job
	if j == nil || j.rel != nil || m.ID != j.entry.ManifestID {
		return
	}
	p := d.peers[m.Peer]
	if m.Err != nil {
		j.manifestIn = false
		if p != nil {
			p.noMan = time.Now()
		}
		d.cfg.Logger.Debug("downloader: manifest request", "peer", m.Peer, "err", m.Err)
		return
	}
	if sha256.Sum256(m.Raw) != j.entry.ManifestID {
		j.manifestIn = false
		ctx.Send(d.cfg.Swarm, &swarm.Misbehaved{Peer: m.Peer, Reason: ErrManifestMismatch})
		d.dropPeer(m.Peer)
		return
	}
	d.askVerifier(ctx, &verifier.CheckManifest{Raw: m.Raw, Entry: j.entry, Peer: m.Peer})
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
	if d.cfg.Reuse != nil && !rel.Complete() {
		if idx, n := d.cfg.Reuse(rel); len(idx) > 0 {
			for _, i := range idx {
				ctx.Send(d.cfg.Swarm, &swarm.Verified{ID: rel.ID(), Index: i})
			}
			d.send(ctx, &Reused{ID: rel.ID(), Chunks: len(idx), Bytes: n, Verified: rel.Count(), Total: rel.Manifest().Manifest.NumChunks()})
		}
	}
	d.newPlan()
	if rel.Complete() {
		d.askVerifier(ctx, &verifier.Finish{Manifest: rel.Manifest(), StagingPath: rel.Path()})
		return
	}
	d.schedule(ctx)
}

func (d *downloaderActor) onChunk(ctx actor.Context, m *chunkArrived) {
	j := d.job
	if j == nil || j.rel == nil || j.rel.ID() != m.id {
		return
	}
	now := time.Now()
	if m.err != nil {
		why := plan.Failed
		switch {
		case errors.Is(m.err, wire.ErrNotFound) || errors.Is(m.err, wire.ErrBadIndex) || errors.Is(m.err, wire.ErrInternal):
			why = plan.Refused
		case errors.Is(m.err, swarm.ErrNoPeer):
			// The swarm has no connection to it (any more: it may have
			// restarted): forget the peer; it comes back with PeerUp.
			d.dropPeer(m.peer)
			d.schedule(ctx)
			return
		case errors.Is(m.err, wire.ErrBusy):
			// Its upload slots are full: leave the whole peer alone a
			// moment and ask others, instead of queueing more there.
			why = plan.Busy
		}
		claimed := j.plan.Holds(m.peer, m.index)
		n := j.plan.Fail(m.peer, m.index, why, now)
		if why == plan.Refused && claimed {
			d.cfg.Logger.Debug("downloader: peer refused a chunk it claimed", "chunk", m.index, "peer", m.peer, "false_claims", n, "err", m.err)
			if n >= falseClaimLimit {
				d.cfg.Logger.Info("downloader: dropping peer for false claims", "peer", m.peer, "false_claims", n)
				ctx.Send(d.cfg.Swarm, &swarm.Misbehaved{Peer: m.peer, Reason: fmt.Errorf("%w: refused %d chunks it claimed", ErrFalseClaims, n)})
				d.dropPeer(m.peer)
			}
		}
		d.cfg.Logger.Debug("downloader: chunk request", "chunk", m.index, "peer", m.peer, "err", m.err)
		d.schedule(ctx)
		return
	}
	j.plan.Arrived(m.peer, m.index, len(m.data), now)
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
	// The chunk is done for the plan; other requests for it (the endgame's)
	// are withdrawn.
	for _, c := range j.plan.Got(m.index) {
		ctx.Send(d.cfg.Swarm, &swarm.CancelChunk{Peer: c.Peer, ID: m.id, Index: c.Index})
	}
	d.askVerifier(ctx, &verifier.CheckChunk{
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
			if j.plan != nil {
				j.plan.Lost(i)
			}
			continue
		}
		tok := d.ctr.tokens.Add(1)
		j.verifying[i] = tok
		d.askVerifier(ctx, &verifier.CheckChunk{
			Manifest: j.rel.Manifest(), StagingPath: j.rel.Path(), Index: i, Data: data, Token: tok,
		})
	}
	if j.rel.Complete() {
		d.askVerifier(ctx, &verifier.Finish{Manifest: j.rel.Manifest(), StagingPath: j.rel.Path()})
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
		d.askVerifier(ctx, &verifier.Finish{Manifest: j.rel.Manifest(), StagingPath: j.rel.Path()})
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
			if j.plan != nil && !j.rel.Has(m.Index) {
				j.plan.Lost(m.Index)
			}
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
	d.dropPeer(peer)
	d.schedule(ctx)
}

// askVerifier sends the verifier a request whose answer comes back to the
// downloader.
func (d *downloaderActor) askVerifier(ctx actor.Context, m any) {
	if j := d.job; j != nil {
		switch m.(type) {
		case *verifier.CheckManifest:
			j.manifestCheck = true
		case *verifier.Finish:
			j.finishing = true
		}
	}
	d.verifierAt = time.Now()
	ctx.Request(d.cfg.Verifier, m)
}

// join asks the swarm to join a release's swarm.
func (d *downloaderActor) join(ctx actor.Context, m *swarm.Join) {
	d.joinedAt = time.Now()
	ctx.Request(d.cfg.Swarm, m)
}

// heal asks again what a restarted stage lost, without being told of the
// restart: every request the verifier has left unanswered for
// CheckTimeout (a restarted verifier drops them), and the swarm's join
// when the fetch has had no peer for a while (a restarted swarm forgets
// its joins and connections; requests to its old peers came back with
// ErrNoPeer and dropped them).
func (d *downloaderActor) heal(ctx actor.Context) {
	j := d.job
	if j == nil {
		return
	}
	now := time.Now()
	waiting := len(j.verifying) > 0 || j.manifestCheck || j.finishing
	if waiting && now.Sub(d.verifierAt) > d.cfg.CheckTimeout {
		d.cfg.Logger.Info("downloader: the verifier left requests unanswered; asking again",
			"release", j.entry.ManifestID.Short(), "checks", len(j.verifying), "after", d.cfg.CheckTimeout)
		j.manifestCheck, j.finishing = false, false
		d.recheck(ctx)
	}
	if len(d.peers) == 0 && now.Sub(d.joinedAt) > 5*d.cfg.Retry {
		d.join(ctx, &swarm.Join{ID: j.entry.ManifestID})
	}
}
