package swarm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// Config configures the swarm stage.
type Config struct {
	Node    *network.Node
	Store   *store.Store
	NodeKey ed25519.PrivateKey
	Limits  wire.Limits
	// MaxPeers caps the connections a node dials (it accepts up to twice
	// as many); default 12. Fewer connections cost no speed in a 50-node
	// simulation in virtual time (10.4 s with 32 or 12) and far less CPU:
	// with 32, a 100-node real-time simulation spent its time in TLS
	// handshakes and none finished in 60 s; with 12 most did.
	MaxPeers int
	// MaxUploads caps the chunk answers being sent at once, to all peers
	// together; further requests wait for a slot (the one whose chunk has
	// the fewest copies outside this node goes first, see the package doc),
	// and are answered busy after UploadWait. A seeder thus sends a few chunks at full rate instead
	// of every requested chunk at a crawl (which made every request time out
	// once a hundred peers asked the publisher at once), and each chunk
	// arrives sooner, so it can be passed on sooner. Default 2: in a 50-node
	// simulation in virtual time (4 MiB, 1 MiB/s links) all nodes had the
	// release after 10.3 s with 1 slot, 10.4 s with 2, 11.3 s with 4,
	// 13.7 s with 8 and 17.0 s with 16 (see docs/BENCHMARKS.md).
	MaxUploads int
	// UploadWait is how long a chunk request waits for an upload slot
	// before it is answered busy; default 500ms (a requester that waits
	// longer could have asked another peer).
	UploadWait time.Duration
	// AnnounceInterval is how often held releases are re-announced; default 5m.
	AnnounceInterval time.Duration
	// Topic, when not zero, is the app's awareness topic (MeshTopic): the
	// node announces itself under it and keeps at least MeshSize
	// connections to nodes found there, idle or not (see mesh.go).
	Topic release.SwarmID
	// MeshSize is how many connections the mesh keeps; default 4.
	MeshSize int
	// FindInterval is how often peers are looked up again while a Join is
	// active; default 2s.
	FindInterval time.Duration
	// UploadRate caps upload in bytes per second; 0 means unlimited.
	UploadRate int64
	// Private, when set, makes this node a member of a private swarm: swarm
	// IDs come from its secret and every peer must prove it knows the
	// secret before anything is exchanged (see private.go). Nil: public.
	Private *release.Private
	// Logger receives the stage's logs; nil is silent.
	Logger *slog.Logger
	// FaultHook, when set, is called with every message; tests inject panics.
	FaultHook func(msg any)
	// ServeFault, when set, is called before each chunk is served to a
	// peer, on the goroutine serving it; tests inject panics there.
	ServeFault func(peer wire.NodeID, id release.ManifestID, index int)
}

func (c *Config) populate() {
	if c.MaxPeers == 0 {
		c.MaxPeers = 12
	}
	if c.MaxUploads == 0 {
		c.MaxUploads = 2
	}
	if c.UploadWait == 0 {
		c.UploadWait = 500 * time.Millisecond
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = 5 * time.Minute
	}
	if c.MeshSize == 0 {
		c.MeshSize = defaultMeshSize
	}
	if c.FindInterval == 0 {
		c.FindInterval = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// uploadBurst is the upload limiter's bucket; chunks are paid for in pieces
// of at most this size, so a low rate is held from the first chunk on.
const uploadBurst = 64 << 10

// counters are shared by the swarm and its peer actors.
type counters struct {
	uploaded atomic.Int64
	served   atomic.Int64
	up       *uploads // upload slots and per-chunk counts
	// queued counts peer messages sent to the swarm actor and not yet
	// taken, and queuedPeak its highest value: the bound on the mailbox
	// that Notify's wait gives, checked by the tests.
	queued, queuedPeak atomic.Int64
	dials              atomic.Int64 // dials started
	recordChecks       atomic.Int64 // gossiped records whose signature was checked
	servePanics        atomic.Int64 // panics while serving a peer, each one peer dropped
	slowAnswers        atomic.Int64 // answers abandoned below wire's MinAnswerRate
}

// queue adds d to the peer messages queued for the swarm actor.
func (c *counters) queue(d int64) {
	n := c.queued.Add(d)
	for {
		p := c.queuedPeak.Load()
		if n <= p || c.queuedPeak.CompareAndSwap(p, n) {
			return
		}
	}
}

type peer struct {
	pid    *actor.PID
	conn   *wire.Conn
	dialed bool           // we dialled it
	path   network.Method // direct, punched or relayed (reach.go)
	added  time.Time
	// use is what the peer gave and took, for choosing whom to drop when
	// full; shared with its peer actor.
	use *peerUseful
	// What the peer said it holds, kept so a subscriber that joins later
	// learns it too: a peer that finished before we joined never repeats
	// its Hello, and without it would look empty forever.
	hello *wire.Hello
	haves []wire.Have
	// seen holds the Haves remembered in haves, so a repeated one is
	// neither kept nor passed on again.
	seen map[wire.Have]struct{}
	// hellos limits the peer's Hellos (each is a full replacement, and a
	// node sends one per connection); a peer past it is dropped.
	hellos *rate.Limiter
	// pex limits the addresses taken from the peer's Peers messages.
	pex *rate.Limiter
	// records limits the peer's Record messages.
	records *rate.Limiter
	// held has a bit per chunk the peer announced, for each release the
	// store holds (tracked); the upload queue counts holders from it.
	held map[release.ManifestID][]byte
}

// maxKeptHaves bounds the Have messages remembered per peer.
const maxKeptHaves = 8192

// A peer may send helloBurst Hellos at once and one per helloEvery after
// that; an honest node sends one per connection.
const (
	helloBurst = 4
	helloEvery = 10 * time.Second
)

// A peer may send recordBurst Record messages at once and one per
// recordEvery after that; the rest are dropped unread. An honest node
// passes on a record once, when it learns it, and records change seldom.
const (
	recordBurst = 8
	recordEvery = 5 * time.Second
)

// recordCacheSize bounds each of the two caches that spare the signature
// check of a gossiped record seen before: the key and seq of records
// verified, and the hashes of records refused. A full cache is emptied.
const recordCacheSize = 256

// Peer exchange: at most pexTake addresses are taken from one Peers
// message (a node sends up to 20 to each new connection), at most
// pexPeerBurst from one peer at once and one per pexPeerEvery after that,
// and at most pexBurst from all peers together, pexRate per second after
// that. Addresses past these are dropped, so a peer cannot aim this node's
// dials at a third party at more than a trickle.
const (
	pexTake      = 20
	pexPeerBurst = 20
	pexPeerEvery = 3 * time.Second
	pexBurst     = 64
	pexRate      = 4
)

type swarmActor struct {
	cfg     Config
	mesh    meshState
	reach   reachState
	self    wire.NodeID
	ctr     *counters
	limiter *rate.Limiter

	ctx       context.Context
	cancel    context.CancelFunc
	ln        *wire.Listener
	sub       *actor.PID
	joined    map[release.ManifestID]bool
	peers     map[wire.NodeID]*peer
	byPID     map[string]wire.NodeID
	dialing   map[netip.AddrPort]bool
	banned    map[wire.NodeID]bool
	announced map[release.ManifestID]time.Time
	known     map[netip.AddrPort]bool
	failed    map[netip.AddrPort]time.Time        // last failed dial, for backoff
	finding   map[release.ManifestID]bool         // a peer lookup is under way
	lonely    int                                 // ticks in a row joined with no peer
	lookups   map[release.ManifestID]*lookupState // peer-lookup back-off (findback.go)
	tracked   map[release.ManifestID]int          // releases whose holders are counted: chunk count
	pex       *rate.Limiter                       // addresses taken from all peers' Peers messages
	// seen holds the key and seq of records verified (or gossiped by this
	// node), refused the SHA-256 of records that failed to decode: a record
	// matching either is dropped without a signature check.
	seen    map[recordKey]struct{}
	refused map[[32]byte]struct{}
	adm     *admission // limits on new inbound connections
}

// Props returns the props that spawn a swarm.
func Props(cfg Config) *actor.Props {
	props, _ := newProps(cfg)
	return props
}

// newProps returns the props that spawn a swarm and the counters it shares
// with its peer actors.
func newProps(cfg Config) (*actor.Props, *counters) {
	cfg.populate()
	ctr := &counters{up: newUploads(cfg.MaxUploads)}
	var lim *rate.Limiter
	if cfg.UploadRate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.UploadRate), uploadBurst)
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &swarmActor{cfg: cfg, ctr: ctr, limiter: lim, self: wire.NodeIDOf(cfg.NodeKey.Public().(ed25519.PublicKey))}
	}), ctr
}

// internal messages
type (
	accepted struct {
		conn *wire.Conn
		path network.Method // Relay, or found by pathOf
	}
	dialed struct {
		addr netip.AddrPort
		conn *wire.Conn
		path network.Method
	}
	dialFailed struct {
		addr netip.AddrPort
		err  error
	}
	found struct {
		addr netip.AddrPort
		id   release.ManifestID
		hint network.Hint // what the announcement says of reaching it
	}
	findDone struct{ id release.ManifestID }
	tick     struct{}
	peerMsg  struct {
		from  wire.NodeID
		msg   wire.Message
		taken chan struct{} // closed once the swarm has handled msg
	}
)

func (s *swarmActor) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if s.cfg.FaultHook != nil {
		s.cfg.FaultHook(msg)
	}
	switch m := msg.(type) {
	case *actor.Started:
		s.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		s.stop()
	case *tick:
		s.onTick(ctx)
	case *accepted:
		path := m.path
		if path != network.Relay {
			path = s.pathOf(m.conn) // reach.go
		}
		s.addPeer(ctx, m.conn, false, path)
	case *dialed:
		delete(s.dialing, m.addr)
		s.addPeer(ctx, m.conn, true, m.path)
	case *dialFailed:
		delete(s.dialing, m.addr)
		delete(s.known, m.addr) // learnt again if a lookup finds it
		s.failed[m.addr] = time.Now()
		if len(s.failed) > maxKnown {
			s.failed = map[netip.AddrPort]time.Time{}
		}
		s.cfg.Logger.Debug("swarm: dial failed", "addr", m.addr, "err", m.err)
	case *findDone:
		delete(s.finding, m.id)
		s.lookupDone(m.id)
	case *meshFindDone:
		s.meshFindDone(m)
	case *meshFound:
		s.meshFound(ctx, m.addr)
	case *found:
		if m.hint != (network.Hint{}) {
			s.learnHint(m.addr, m.hint) // reach.go
		}
		s.lookupFound(m.id, m.addr)
		s.learn(m.addr)
		s.maybeDial(ctx, m.addr)
	case *actor.Terminated:
		if id, ok := s.byPID[m.Who.Id]; ok {
			delete(s.byPID, m.Who.Id)
			if p := s.peers[id]; p != nil && p.pid.Equal(m.Who) {
				s.dropHeld(p)
				delete(s.peers, id)
				if s.sub != nil {
					ctx.Send(s.sub, &PeerDown{Peer: id})
				}
			}
		}
	case *peerMsg:
		s.takePeerMsg(ctx, m)
	case *Join:
		s.sub = ctx.Sender()
		s.joined[m.ID] = true
		for id, p := range s.peers {
			ctx.Send(s.sub, &PeerUp{Peer: id})
			if p.hello != nil {
				for _, hs := range p.hello.Releases {
					if s.wanted(hs.ID) {
						ctx.Send(s.sub, &PeerHas{Peer: id, ID: hs.ID, Bitfield: hs.Bitfield, Complete: hs.Complete, Index: -1})
					}
				}
			}
			for _, h := range p.haves {
				if s.wanted(h.ID) {
					ctx.Send(s.sub, &PeerHas{Peer: id, ID: h.ID, Index: int(h.Index)})
				}
			}
		}
		s.announce(ctx, m.ID)
		s.find(ctx, m.ID)
	case *Leave:
		delete(s.joined, m.ID)
		delete(s.lookups, m.ID)
	case *Verified:
		s.track(m.ID)
		s.broadcast(ctx, &wire.Have{ID: m.ID, Index: uint32(m.Index)})
		if _, ok := s.announced[m.ID]; !ok {
			s.announce(ctx, m.ID)
		}
	case *GetChunk:
		if p := s.peers[m.Peer]; p != nil {
			ctx.Send(p.pid, &fetchChunk{req: m, reply: ctx.Sender()})
		} else if ctx.Sender() != nil {
			ctx.Send(ctx.Sender(), &ChunkFailed{Peer: m.Peer, ID: m.ID, Index: m.Index, Err: ErrNoPeer})
		}
	case *CancelChunk:
		if p := s.peers[m.Peer]; p != nil {
			ctx.Send(p.pid, m)
		}
	case *GetManifest:
		if p := s.peers[m.Peer]; p != nil {
			ctx.Send(p.pid, &fetchManifest{req: m, reply: ctx.Sender()})
		} else if ctx.Sender() != nil {
			ctx.Send(ctx.Sender(), &ManifestArrived{Peer: m.Peer, ID: m.ID, Err: ErrNoPeer})
		}
	case *Misbehaved:
		s.misbehaved(m.Peer, m.Reason)
	case *Gossip:
		s.meshNewest(m.Packet)
		s.sawRecord(m.Packet) // its echoes from peers need no check
		s.broadcast(ctx, &wire.Record{Relay: m.Packet.EncodeRelay()})
	case *Stats:
		ctx.Respond(&StatsReply{Peers: len(s.peers), UploadedBytes: s.ctr.uploaded.Load(), ChunksServed: s.ctr.served.Load()})
	case *Served:
		s.served(ctx, m) // reach.go: adds the connection's path
	}
}

func (s *swarmActor) start(ctx actor.Context) {
	s.joined = map[release.ManifestID]bool{}
	s.peers = map[wire.NodeID]*peer{}
	s.byPID = map[string]wire.NodeID{}
	s.dialing = map[netip.AddrPort]bool{}
	s.banned = map[wire.NodeID]bool{}
	s.announced = map[release.ManifestID]time.Time{}
	s.known = map[netip.AddrPort]bool{}
	s.failed = map[netip.AddrPort]time.Time{}
	s.finding = map[release.ManifestID]bool{}
	s.tracked = map[release.ManifestID]int{}
	s.pex = rate.NewLimiter(pexRate, pexBurst)
	s.seen = map[recordKey]struct{}{}
	s.refused = map[[32]byte]struct{}{}
	s.ctr.up.clearHolders() // a restarted swarm starts without peers
	s.adm = newAdmission()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ln, err := wire.Listen(s.cfg.Node.Transport(), s.cfg.NodeKey, s.cfg.Limits)
	if err != nil {
		// A node that cannot listen can still download; log and go on.
		s.cfg.Logger.Warn("swarm: listen", "err", err)
	} else {
		s.ln = ln
		sys, self := ctx.ActorSystem(), ctx.Self()
		adm := s.adm
		go func() {
			for {
				c, err := ln.Accept(s.ctx)
				if err != nil {
					return
				}
				if priv, c0, log := s.cfg.Private, s.ctx, s.cfg.Logger; priv != nil {
					// Each proof on its own goroutine: a silent peer must
					// not hold up the next accept.
					go func() {
						if err := prove(c0, priv, c); err != nil {
							log.Info("swarm: peer refused", "err", err)
							return
						}
						sys.Root.Send(self, &accepted{conn: c})
					}()
					continue
				}
				if !adm.handshake() {
					c.Close(wire.CodeBusy, "too many new connections")
					continue
				}
				sys.Root.Send(self, &accepted{conn: c})
			}
		}()
	}
	s.acceptRelayed(ctx) // reach.go
	for _, r := range s.cfg.Store.List() {
		if r.Count() > 0 {
			s.announce(ctx, r.ID())
		}
	}
	s.meshTick(ctx)
	s.schedule(ctx, s.cfg.FindInterval)
}

func (s *swarmActor) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
}

func (s *swarmActor) schedule(ctx actor.Context, d time.Duration) {
	sys, self, done := ctx.ActorSystem(), ctx.Self(), s.ctx.Done()
	// Jitter keeps hundreds of simulated nodes from querying in lockstep.
	d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			sys.Root.Send(self, &tick{})
		case <-done:
		}
	}()
}

func (s *swarmActor) onTick(ctx actor.Context) {
	now := time.Now()
	s.observePeers() // reach.go
	if len(s.joined) > 0 && len(s.peers) == 0 {
		// Looking for peers and finding none: the routing table may be
		// nearly empty (its bootstrap lost answers under load). Fill it
		// again every few ticks, in the background.
		s.lonely++
		if s.lonely%3 == 0 {
			node, c, log := s.cfg.Node, s.ctx, s.cfg.Logger
			go func() {
				bctx, cancel := context.WithTimeout(c, 30*time.Second)
				defer cancel()
				if err := node.Bootstrap(bctx); err != nil {
					log.Debug("swarm: re-bootstrap", "err", err)
				}
			}()
		}
	} else {
		s.lonely = 0
	}
	for _, r := range s.cfg.Store.List() {
		if at, ok := s.announced[r.ID()]; r.Count() > 0 && (!ok || now.Sub(at) > s.cfg.AnnounceInterval) {
			s.announce(ctx, r.ID())
		}
	}
	for id := range s.joined {
		if r := s.cfg.Store.Get(id); r != nil && r.Complete() {
			delete(s.joined, id)
			delete(s.lookups, id)
			continue
		}
		s.find(ctx, id)
		// Peers learnt by exchange but not yet connected.
		for a := range s.known {
			s.maybeDial(ctx, a)
		}
	}
	s.reannounce(ctx) // reach.go: when the node's NAT status changed
	s.meshTick(ctx)
	s.schedule(ctx, s.cfg.FindInterval)
}

func (s *swarmActor) announce(ctx actor.Context, id release.ManifestID) {
	s.announced[id] = time.Now()
	sid, ok := s.announceID(id) // reach.go: under the NAT ID behind a NAT, nowhere behind a symmetric one
	if !ok {
		return
	}
	node, log, c := s.cfg.Node, s.cfg.Logger, s.ctx
	go func() {
		actx, cancel := context.WithTimeout(c, 30*time.Second)
		defer cancel()
		if err := node.Announce(actx, sid); err != nil {
			log.Debug("swarm: announce", "release", id.Short(), "err", err)
		}
	}()
}

func (s *swarmActor) find(ctx actor.Context, id release.ManifestID) {
	// One lookup per release at a time: a lookup can take longer than the
	// find interval, and piling them up flooded the DHT.
	if s.finding[id] || len(s.peers)+len(s.dialing) >= s.cfg.MaxPeers || !s.lookupDue(id) {
		return
	}
	s.finding[id] = true
	sys, self, node, c, sid := ctx.ActorSystem(), ctx.Self(), s.cfg.Node, s.ctx, s.swarmID(id)
	go func() {
		defer sys.Root.Send(self, &findDone{id: id})
		fctx, cancel := context.WithTimeout(c, 20*time.Second)
		defer cancel()
		// The release's swarm ID and its NAT ID (reach.go), at once.
		lookup := func(sid release.SwarmID, hint network.Hint) {
			ch, err := node.FindPeers(fctx, sid)
			if err != nil {
				return
			}
			for a := range ch {
				sys.Root.Send(self, &found{addr: a, id: id, hint: hint})
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			lookup(network.NATSwarmID(sid), network.Hint{NAT: true})
		}()
		lookup(sid, network.Hint{})
		<-done
	}()
}

func (s *swarmActor) maybeDial(ctx actor.Context, a netip.AddrPort) {
	if len(s.joined) == 0 || len(s.peers)+len(s.dialing) >= s.cfg.MaxPeers || !s.openSlot(a) {
		return
	}
	s.dial(ctx, a)
}

// dial connects to a unless it cannot be a node, is this node, is being
// dialled or connected, or failed recently.
func (s *swarmActor) dial(ctx actor.Context, a netip.AddrPort) {
	if s.dialing[a] || !dialable(a) || a == s.cfg.Node.QUICAddr() {
		return
	}
	if t, ok := s.failed[a]; ok && time.Since(t) < redialAfter {
		return
	}
	for _, p := range s.peers {
		if p.conn.RemoteAddr().String() == a.String() {
			return
		}
	}
	s.dialing[a] = true
	s.ctr.dials.Add(1)
	sys, self, c := ctx.ActorSystem(), ctx.Self(), s.ctx
	node, key, lim, priv := s.cfg.Node, s.cfg.NodeKey, s.cfg.Limits, s.cfg.Private
	hint, vias := s.hint(a), s.rendezvous() // reach.go
	go func() {
		dctx, cancel := context.WithTimeout(c, 15*time.Second)
		defer cancel()
		conn, path, err := connect(dctx, node, a, hint, vias, key, lim) // reach.go
		if err == nil {
			err = prove(dctx, priv, conn)
		}
		if err != nil {
			sys.Root.Send(self, &dialFailed{addr: a, err: err})
			return
		}
		sys.Root.Send(self, &dialed{addr: a, conn: conn, path: path})
	}()
}

func (s *swarmActor) addPeer(ctx actor.Context, conn *wire.Conn, weDialed bool, path network.Method) {
	id := conn.RemoteID()
	switch {
	case id == s.self:
		conn.Close(wire.CodeProtocol, "self")
		return
	case s.banned[id]:
		conn.Close(wire.CodeProtocol, "banned")
		return
	}
	if old := s.peers[id]; old != nil {
		// Keep the connection dialled by the smaller node ID, on both sides.
		keepNew := weDialed == (bytes.Compare(s.self[:], id[:]) < 0)
		if !keepNew {
			conn.Close(wire.CodeProtocol, "duplicate")
			return
		}
		s.dropHeld(old)
		delete(s.byPID, old.pid.Id)
		ctx.Stop(old.pid)
	} else if len(s.peers) >= s.cfg.MaxPeers*2 {
		// Full. Refusing every newcomer would isolate a node that joins
		// late, when everyone is full: make room by dropping the least
		// useful connection the other side dialled (see admit.go), unless
		// the newcomer's address or group made room too often lately.
		oldest, found := s.victim()
		if !found || weDialed || !s.adm.evictFor(conn.RemoteAddr()) {
			conn.Close(wire.CodeBusy, "too many peers")
			return
		}
		old := s.peers[oldest]
		s.dropHeld(old)
		delete(s.peers, oldest)
		delete(s.byPID, old.pid.Id)
		ctx.Stop(old.pid)
		if s.sub != nil {
			ctx.Send(s.sub, &PeerDown{Peer: oldest})
		}
	}
	use := &peerUseful{}
	pid := ctx.Spawn(peerProps(peerConfig{
		conn: conn, store: s.cfg.Store, logger: s.cfg.Logger, ctr: s.ctr, limiter: s.limiter, uploadWait: s.cfg.UploadWait,
		parent: ctx.Self(), faultHook: s.cfg.FaultHook, serveFault: s.cfg.ServeFault, use: use,
	}))
	s.peers[id] = &peer{pid: pid, conn: conn, dialed: weDialed, path: path, added: time.Now(), use: use,
		hellos:  rate.NewLimiter(rate.Every(helloEvery), helloBurst),
		pex:     rate.NewLimiter(rate.Every(pexPeerEvery), pexPeerBurst),
		records: rate.NewLimiter(rate.Every(recordEvery), recordBurst)}
	s.byPID[pid.Id] = id
	s.observePeers() // reach.go
	if s.sub != nil {
		ctx.Send(s.sub, &PeerUp{Peer: id})
	}
	// Peer exchange: tell the newcomer whom else we know.
	var addrs []netip.AddrPort
	for _, p := range s.peers {
		if ap, err := netip.ParseAddrPort(p.conn.RemoteAddr().String()); err == nil && p.dialed && p.path != network.Relay {
			addrs = append(addrs, ap)
		}
		if len(addrs) == 20 {
			break
		}
	}
	if len(addrs) > 0 {
		ctx.Send(pid, &send{msg: &wire.Peers{Addrs: addrs}})
	}
	s.sendReachPeers(ctx, id, pid) // reach.go: the peers behind NAT, and how to reach them
	s.meshGreet(ctx, pid)
}

// takePeerMsg handles a peer's one-way message and then lets its Notify
// return, so the peer's next message is read only now.
func (s *swarmActor) takePeerMsg(ctx actor.Context, m *peerMsg) {
	s.ctr.queue(-1)
	defer close(m.taken) // also if handling panics: the restart drops m
	s.onPeerMsg(ctx, m)
}

// wanted reports whether the subscriber cares about release id: it joined
// it, or the store holds it. A peer's news of any other release is kept
// (for a later Join) but not passed on, so one Hello naming thousands of
// releases costs the downloader nothing.
func (s *swarmActor) wanted(id release.ManifestID) bool {
	return s.joined[id] || s.cfg.Store.Get(id) != nil
}

func (s *swarmActor) onPeerMsg(ctx actor.Context, m *peerMsg) {
	p := s.peers[m.from]
	if p == nil {
		return // a connection already replaced or dropped
	}
	switch w := m.msg.(type) {
	case *wire.Hello:
		if !p.hellos.Allow() {
			s.misbehaved(m.from, errors.New("swarm: Hello flood"))
			return
		}
		s.dropHeld(p)
		p.hello, p.haves, p.seen = w, nil, nil
		for _, hs := range w.Releases {
			if n, ok := s.track(hs.ID); ok {
				s.addHeld(p, hs.ID, n, hs.Complete, hs.Bitfield, -1)
			}
			if s.wanted(hs.ID) {
				s.toSub(ctx, &PeerHas{Peer: m.from, ID: hs.ID, Bitfield: hs.Bitfield, Complete: hs.Complete, Index: -1})
			}
		}
	case *wire.Have:
		if _, dup := p.seen[*w]; dup {
			return // said before: nothing new for anyone
		}
		if len(p.haves) < maxKeptHaves {
			if p.seen == nil {
				p.seen = map[wire.Have]struct{}{}
			}
			p.seen[*w] = struct{}{}
			p.haves = append(p.haves, *w)
		} else if _, ok := s.tracked[w.ID]; !ok {
			// Past the cap news can no longer be told apart from
			// repeats, except for releases with a known chunk count
			// (below): drop it rather than pass on a flood.
			return
		}
		if n, ok := s.track(w.ID); ok {
			if set := p.held[w.ID]; int(w.Index) >= n || set != nil && set[w.Index/8]&(0x80>>(w.Index%8)) != 0 {
				return // outside the release, or already known held
			}
			s.addHeld(p, w.ID, n, false, nil, int(w.Index))
		}
		if s.wanted(w.ID) {
			s.toSub(ctx, &PeerHas{Peer: m.from, ID: w.ID, Index: int(w.Index)})
		}
	case *wire.Record:
		if !p.records.Allow() || s.knownRecord(w.Relay) {
			return
		}
		s.ctr.recordChecks.Add(1)
		sp, err := release.DecodeRelay(w.Relay)
		if err != nil {
			if len(s.refused) >= recordCacheSize {
				clear(s.refused)
			}
			s.refused[sha256.Sum256(w.Relay)] = struct{}{}
			s.cfg.Logger.Debug("swarm: bad gossiped record", "peer", m.from, "err", err)
			return
		}
		s.sawRecord(sp)
		if ctx.Parent() != nil {
			ctx.Send(ctx.Parent(), &RecordGossiped{Packet: sp, From: m.from})
		}
	case *wire.ReachPeers:
		s.takeReachPeers(ctx, p, w) // reach.go
	case *wire.Peers:
		taken := 0
		for _, a := range w.Addrs {
			a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
			if !dialable(a) || s.known[a] || a == s.cfg.Node.QUICAddr() {
				continue
			}
			if taken == pexTake || s.pex.Tokens() < 1 || !p.pex.Allow() || !s.pex.Allow() {
				break
			}
			taken++
			s.learn(a)
			s.maybeDial(ctx, a)
		}
	}
}

// recordKey names a signed record: a key publishes at most one per seq.
type recordKey struct {
	key release.PublicKey
	seq int64
}

// knownRecord reports whether a gossiped record in relay form is one seen
// before: refused already, or with the key and seq of one verified already.
// It reads only the header, so no signature is checked.
func (s *swarmActor) knownRecord(relay []byte) bool {
	if _, ok := s.refused[sha256.Sum256(relay)]; ok {
		return true
	}
	if len(relay) < release.RelayHeaderSize {
		return false // malformed: DecodeRelay says why
	}
	var k recordKey
	copy(k.key[:], relay)
	k.seq = int64(binary.BigEndian.Uint64(relay[release.RelayHeaderSize-8:]))
	_, ok := s.seen[k]
	return ok
}

// sawRecord notes a verified record, so that copies of it (and forgeries
// with its key and seq) are not checked again.
func (s *swarmActor) sawRecord(p *release.SignedPacket) {
	if len(s.seen) >= recordCacheSize {
		clear(s.seen)
	}
	s.seen[recordKey{p.PublicKey, p.Seq}] = struct{}{}
}

// dialable reports whether a could be another node's QUIC address: a
// unicast address (loopback, private or global) and a port. Anything else
// (port 0, unspecified, multicast, broadcast, link-local) is never dialled,
// whoever named it.
func dialable(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	return a.Port() != 0 && (ip.IsLoopback() || ip.IsPrivate() || ip.IsGlobalUnicast())
}

// misbehaved drops and bans a peer.
func (s *swarmActor) misbehaved(id wire.NodeID, reason error) {
	s.banned[id] = true
	if p := s.peers[id]; p != nil {
		s.cfg.Logger.Info("swarm: dropping peer", "peer", id, "reason", reason)
		p.conn.Close(wire.CodeProtocol, "bad data")
	}
}

// redialAfter is how long an address that failed to connect is left alone.
const redialAfter = 15 * time.Second

// maxKnown bounds the addresses remembered from lookups and peer exchange,
// so a peer flooding Peers messages cannot grow the swarm's memory.
const maxKnown = 1024

func (s *swarmActor) learn(a netip.AddrPort) {
	if len(s.known) < maxKnown {
		s.known[a] = true
	}
}

func (s *swarmActor) toSub(ctx actor.Context, m *PeerHas) {
	if s.sub != nil {
		ctx.Send(s.sub, m)
	}
}

func (s *swarmActor) broadcast(ctx actor.Context, m wire.Message) {
	for _, p := range s.peers {
		ctx.Send(p.pid, &send{msg: m})
	}
}

// track starts counting the holders of release id among the peers, from
// what they announced so far, once the store holds the release (before
// that its chunk count is unknown). It returns the chunk count and whether
// the release is tracked.
func (s *swarmActor) track(id release.ManifestID) (int, bool) {
	if n, ok := s.tracked[id]; ok {
		return n, true
	}
	r := s.cfg.Store.Get(id)
	if r == nil {
		return 0, false
	}
	n := r.Manifest().Manifest.NumChunks()
	s.tracked[id] = n
	for _, p := range s.peers {
		if p.hello != nil {
			for _, hs := range p.hello.Releases {
				if hs.ID == id {
					s.addHeld(p, id, n, hs.Complete, hs.Bitfield, -1)
				}
			}
		}
		for _, h := range p.haves {
			if h.ID == id {
				s.addHeld(p, id, n, false, nil, int(h.Index))
			}
		}
	}
	return n, true
}

// addHeld records that peer p holds chunks of release id (n chunks): all
// of them (complete), those set in bitfield, or chunk index (>= 0).
func (s *swarmActor) addHeld(p *peer, id release.ManifestID, n int, complete bool, bitfield []byte, index int) {
	if p.held == nil {
		p.held = map[release.ManifestID][]byte{}
	}
	set := p.held[id]
	if set == nil {
		set = make([]byte, (n+7)/8)
		p.held[id] = set
	}
	var added []int
	mark := func(i int) {
		if i >= 0 && i < n && set[i/8]&(0x80>>(i%8)) == 0 {
			set[i/8] |= 0x80 >> (i % 8)
			added = append(added, i)
		}
	}
	switch {
	case complete:
		for i := range n {
			mark(i)
		}
	case bitfield != nil:
		for i := range min(n, len(bitfield)*8) {
			if bitfield[i/8]&(0x80>>(i%8)) != 0 {
				mark(i)
			}
		}
	default:
		mark(index)
	}
	s.ctr.up.holders(id, n, added, +1)
}

// dropHeld takes a peer that is going away out of the holder counts.
func (s *swarmActor) dropHeld(p *peer) {
	for id, set := range p.held {
		var idx []int
		for i := range len(set) * 8 {
			if set[i/8]&(0x80>>(i%8)) != 0 {
				idx = append(idx, i)
			}
		}
		s.ctr.up.holders(id, s.tracked[id], idx, -1)
	}
	p.held = nil
}
