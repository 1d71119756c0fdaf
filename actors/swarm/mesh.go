package swarm

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// The awareness mesh. Gossip reaches only peers a node is connected to, and
// an idle node (one that holds the current release and downloads nothing)
// would be connected to nobody, so it would learn of a new release only by
// polling the DHT. So every node of an app, idle or not, announces itself in
// the DHT under the app's topic (MeshTopic) and keeps at least MeshSize
// connections to nodes found there. QUIC keep-alives (wire.Limits.KeepAlive)
// hold them open at a few bytes per 10 s. A new record passes over these
// connections as any gossip does (Gossip, and the de-duplication and
// per-peer rate limits of Record messages), and a node sends the newest
// record it holds to every peer that connects, so a node that joins the mesh
// late catches up at once. The publisher is a node of the mesh like the
// others: its record reaches its mesh peers as soon as they connect, and
// floods from there in a few hops.
//
// DHT cost: one announce under the topic per AnnounceInterval, and topic
// lookups only while the node has fewer than MeshSize connections, backing
// off from 2.5 × FindInterval to meshMaxBackoff while the topic yields
// nobody new.

// MeshTopic is the DHT swarm ID under which the nodes of one app of one
// publisher find each other: the first 20 bytes of
// SHA-1("rpe mesh v1" ‖ 0 ‖ publisher key ‖ app).
func MeshTopic(pub release.PublicKey, app string) release.SwarmID {
	h := sha1.New()
	h.Write([]byte("rpe mesh v1\x00"))
	h.Write(pub[:])
	h.Write([]byte(app))
	var id release.SwarmID
	copy(id[:], h.Sum(nil))
	return id
}

// Mesh defaults. Topic lookups back off from 2.5 × FindInterval (5 s by
// default) to meshMaxBackoff.
const (
	defaultMeshSize = 4
	meshMaxBackoff  = 5 * time.Minute
)

// meshState is the swarm actor's mesh bookkeeping.
type meshState struct {
	announced time.Time // last announce under the topic
	finding   bool      // a topic lookup is running
	nextFind  time.Time // no lookup before
	backoff   time.Duration
	newest    *release.SignedPacket // sent to every peer that connects
}

type (
	meshFound    struct{ addr netip.AddrPort }
	meshFindDone struct{ found int }
)

func (s *swarmActor) meshOn() bool { return s.cfg.Topic != release.SwarmID{} }

// meshTopic is the topic announced and looked up: Config.Topic, or in a
// private swarm an ID derived from it and the shared secret, so outsiders
// cannot find the mesh.
func (s *swarmActor) meshTopic() release.SwarmID {
	if s.cfg.Private != nil {
		return s.cfg.Private.SwarmID(release.ManifestID(sha256.Sum256(s.cfg.Topic[:])))
	}
	return s.cfg.Topic
}

// meshTick announces under the topic when due and looks for mesh peers
// while the node has too few connections.
func (s *swarmActor) meshTick(ctx actor.Context) {
	if !s.meshOn() {
		return
	}
	now := time.Now()
	if s.mesh.announced.IsZero() || now.Sub(s.mesh.announced) > s.cfg.AnnounceInterval {
		s.mesh.announced = now
		node, log, c, topic := s.cfg.Node, s.cfg.Logger, s.ctx, s.meshTopic()
		go func() {
			actx, cancel := context.WithTimeout(c, 30*time.Second)
			defer cancel()
			if err := node.Announce(actx, topic); err != nil {
				log.Debug("swarm: mesh announce", "err", err)
			}
		}()
	}
	if s.mesh.finding || len(s.peers)+len(s.dialing) >= s.cfg.MeshSize || now.Before(s.mesh.nextFind) {
		return
	}
	s.mesh.finding = true
	sys, self, node, c, topic := ctx.ActorSystem(), ctx.Self(), s.cfg.Node, s.ctx, s.meshTopic()
	go func() {
		n := 0
		defer func() { sys.Root.Send(self, &meshFindDone{found: n}) }()
		fctx, cancel := context.WithTimeout(c, 20*time.Second)
		defer cancel()
		ch, err := node.FindPeers(fctx, topic)
		if err != nil {
			return
		}
		for a := range ch {
			n++
			sys.Root.Send(self, &meshFound{addr: a})
		}
	}()
}

// meshFindDone schedules the next topic lookup: soon while it finds
// others, backing off while the node stays short of peers and the topic
// yields nobody new.
func (s *swarmActor) meshFindDone(m *meshFindDone) {
	s.mesh.finding = false
	least := s.cfg.FindInterval * 5 / 2
	switch {
	case s.mesh.backoff == 0, len(s.peers) >= s.cfg.MeshSize:
		s.mesh.backoff = least
	default:
		s.mesh.backoff = min(2*s.mesh.backoff, meshMaxBackoff)
	}
	d := s.mesh.backoff
	s.mesh.nextFind = time.Now().Add(d/2 + time.Duration(rand.Int64N(int64(d)/2+1)))
}

// meshFound dials a node found under the topic while the mesh is short.
func (s *swarmActor) meshFound(ctx actor.Context, a netip.AddrPort) {
	if len(s.peers)+len(s.dialing) >= s.cfg.MeshSize {
		return
	}
	s.dial(ctx, a)
}

// meshNewest keeps the newest record gossiped by this node.
func (s *swarmActor) meshNewest(p *release.SignedPacket) {
	if s.mesh.newest == nil || p.Seq > s.mesh.newest.Seq || p.PublicKey != s.mesh.newest.PublicKey {
		s.mesh.newest = p
	}
}

// meshGreet sends a newly connected peer the newest record held.
func (s *swarmActor) meshGreet(ctx actor.Context, pid *actor.PID) {
	if s.mesh.newest != nil {
		ctx.Send(pid, &send{msg: &wire.Record{Relay: s.mesh.newest.EncodeRelay()}})
	}
}
