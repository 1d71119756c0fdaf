package simulation

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	alog "github.com/anacrolix/log"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// The abusive hostile kinds (Staller, Churner, FakeAnnouncer) attack the
// serving side of honest nodes rather than what they install: their upload
// slots, their inbound connection slots and the DHT's lists of peers. Each
// is what one cheap attacker can do from one address. Stallers and churners
// find their targets as any node would, by looking up the release's swarm
// in the DHT; a fake announcer sends its announcements straight to the DHT
// nodes closest to the swarm ID (the harness tells it which they are,
// which an attacker learns by one lookup), since those are the nodes every
// honest lookup asks.
//
// attackCounts is shared by every hostile peer of a run.
type attackCounts struct {
	stallConns, stalled, stallCut, stallRefused, stallBytes atomic.Int64
	churnDials, churnConns, churnRefused, churnDropped      atomic.Int64
	churnFailed                                             atomic.Int64
	fakeSent, fakeAccepted                                  atomic.Int64
}

// Fake announcements go to this many DHT nodes closest to the swarm ID
// (BEP5's K), for ports from fakePortBase on.
const (
	fakeTargets  = 8
	fakePortBase = 20000
)

// churnHeld bounds the connections one churner holds open at once; the
// oldest is closed to make room.
const churnHeld = 64

// newFakeAnnouncerDHT is a fake announcer's DHT client: a plain anacrolix
// server that answers nobody (passive), so that it can send announce_peer
// queries for ports of its choice, which network.Node never does.
func newFakeAnnouncerDHT(conn net.PacketConn, resend time.Duration) (*dht.Server, error) {
	var lg alog.Logger
	lg.SetHandlers(alog.DiscardHandler)
	return dht.NewServer(&dht.ServerConfig{
		Conn:             conn,
		NoSecurity:       true,
		Passive:          true,
		StartingNodes:    func() ([]dht.Addr, error) { return nil, nil },
		QueryResendDelay: func() time.Duration { return resend },
		SendLimiter:      rate.NewLimiter(rate.Inf, 0),
		Logger:           lg,
	})
}

// attackPeers is a staller's or a churner's life: look the swarm up every
// few seconds and attack the first Attack.Targets peers found.
func (h *hostile) attackPeers(rel *hostileRelease) {
	sid := release.SwarmIDOf(rel.sm.ID)
	own := h.node.QUICAddr()
	found := make(chan netip.AddrPort)
	findDone := make(chan struct{})
	find := time.NewTimer(0)
	defer find.Stop()
	var churn <-chan time.Time
	if h.kind == Churner {
		t := time.NewTicker(time.Duration(float64(time.Second) / h.attack.ChurnRate))
		defer t.Stop()
		churn = t.C
	}
	attacked := map[netip.AddrPort]bool{}
	var targets []netip.AddrPort
	next := 0
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-find.C:
			h.wg.Go(func() {
				defer func() {
					select {
					case findDone <- struct{}{}:
					case <-h.ctx.Done():
					}
				}()
				fctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
				defer cancel()
				ch, err := h.node.FindPeers(fctx, sid)
				if err != nil {
					return
				}
				for a := range ch {
					select {
					case found <- a:
					case <-h.ctx.Done():
					}
				}
			})
		case <-findDone:
			find.Reset(3 * time.Second)
		case a := <-found:
			if a.Addr() == own.Addr() || attacked[a] || len(attacked) >= h.attack.Targets {
				continue
			}
			attacked[a] = true
			if h.kind == Staller {
				h.wg.Go(func() { h.stall(rel, a) })
			} else {
				targets = append(targets, a)
			}
		case <-churn:
			if len(targets) == 0 {
				continue
			}
			a := targets[next%len(targets)]
			next++
			key := h.freshKey()
			h.attacks.churnDials.Add(1)
			h.wg.Go(func() { h.churnOne(a, key) })
		}
	}
}

// freshKey is a new node identity: they cost nothing.
func (h *hostile) freshKey() ed25519.PrivateKey {
	var seed [ed25519.SeedSize]byte
	h.rng.Read(seed[:])
	return ed25519.NewKeyFromSeed(seed[:])
}

// wait waits d or until the peer stops; it reports whether d passed.
func (h *hostile) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-h.ctx.Done():
		return false
	}
}

// stall keeps Attack.StalledAnswers chunk requests open on the peer at a,
// reading each answer at Attack.StallRate through a 1 KiB stream window.
// It connects again when the peer closes the connection.
func (h *hostile) stall(rel *hostileRelease, a netip.AddrPort) {
	tc, err := wire.ClientTLS(h.key, wire.NodeID{})
	if err != nil {
		return
	}
	for h.ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		qc, err := h.node.Transport().Dial(dctx, net.UDPAddrFromAddrPort(a), tc, &quic.Config{
			InitialStreamReceiveWindow: 1 << 10, MaxStreamReceiveWindow: 1 << 10,
			InitialConnectionReceiveWindow: 1 << 20, MaxConnectionReceiveWindow: 1 << 20,
			KeepAlivePeriod: time.Second,
		})
		cancel()
		if err == nil {
			h.attacks.stallConns.Add(1)
			var wg sync.WaitGroup
			for j := range h.attack.StalledAnswers {
				wg.Go(func() { h.stallStreams(qc, rel, j) })
			}
			wg.Wait()
			qc.CloseWithError(0, "")
		}
		if !h.wait(2 * time.Second) {
			return
		}
	}
}

// stallStreams asks for chunk after chunk on one stream at a time and
// reads each answer at the stall rate, until the connection ends.
func (h *hostile) stallStreams(qc *quic.Conn, rel *hostileRelease, j int) {
	n := rel.sm.Manifest.NumChunks()
	per := int(max(1, h.attack.StallRate))
	buf := make([]byte, per)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for k := j; qc.Context().Err() == nil; k += h.attack.StalledAnswers {
		s, err := qc.OpenStreamSync(h.ctx)
		if err != nil {
			return
		}
		frame, err := wire.EncodeMessage(&wire.GetChunk{ID: rel.sm.ID, Index: uint32(k % n)})
		if err != nil {
			return
		}
		if _, err := s.Write(frame); err != nil {
			s.CancelRead(0)
			continue
		}
		s.Close()
		h.attacks.stalled.Add(1)
		var got int
		for {
			select {
			case <-tick.C:
			case <-h.ctx.Done():
				s.CancelRead(0)
				return
			}
			m, err := io.ReadFull(s, buf)
			got += m
			h.attacks.stallBytes.Add(int64(m))
			if err == nil {
				continue
			}
			var se *quic.StreamError
			switch {
			case errors.As(err, &se) && se.Remote:
				h.attacks.stallCut.Add(1)
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				if got < 64 { // an error frame: busy or refused
					h.attacks.stallRefused.Add(1)
				}
			}
			break
		}
		if !h.wait(time.Second) {
			return
		}
	}
}

// churnOne opens one connection to a under a fresh identity, says Hello
// and holds it open until the peer closes it or the churner needs room.
func (h *hostile) churnOne(a netip.AddrPort, key ed25519.PrivateKey) {
	dctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	defer cancel()
	c, err := wire.Dial(dctx, h.node.Transport(), net.UDPAddrFromAddrPort(a), key, wire.NodeID{}, wire.Limits{})
	if err != nil {
		h.attacks.churnFailed.Add(1)
		return
	}
	h.attacks.churnConns.Add(1)
	if err := c.Send(dctx, &wire.Hello{}); err != nil {
		h.classifyChurn(c, h.ctx.Err() != nil)
		c.Close(wire.CodeNone, "")
		return
	}
	var ours atomic.Bool
	h.churnMu.Lock()
	h.churned = append(h.churned, churnConn{c, &ours})
	if len(h.churned) > churnHeld {
		old := h.churned[0]
		h.churned = slices.Delete(h.churned, 0, 1)
		old.ours.Store(true)
		old.c.Close(wire.CodeNone, "")
	}
	h.churnMu.Unlock()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c.Serve(h.ctx, refuseAll{})
	}()
	select {
	case <-c.Done():
	case <-h.ctx.Done():
		ours.Store(true)
	}
	h.classifyChurn(c, ours.Load())
	c.Close(wire.CodeNone, "")
	<-served
}

// classifyChurn counts how the honest side ended a churned connection.
func (h *hostile) classifyChurn(c *wire.Conn, ours bool) {
	if ours {
		return
	}
	var we *wire.Error
	err := c.Err()
	switch {
	case err == nil:
		// Hello not sent in time, connection still open: the peer does
		// not read it; counted as refused.
		h.attacks.churnRefused.Add(1)
	case errors.Is(err, wire.ErrBusy):
		h.attacks.churnRefused.Add(1)
	case errors.As(err, &we):
		h.attacks.churnDropped.Add(1)
	default:
		h.attacks.churnDropped.Add(1)
	}
}

// refuseAll serves nothing and ignores one-way messages.
type refuseAll struct{}

func (refuseAll) Manifest(release.ManifestID) ([]byte, error) { return nil, wire.ErrNotFound }
func (refuseAll) Chunk(release.ManifestID, uint32, []byte) ([]byte, error) {
	return nil, wire.ErrNotFound
}
func (refuseAll) Notify(wire.NodeID, wire.Message) {}

type churnConn struct {
	c    *wire.Conn
	ours *atomic.Bool
}

// fakeAnnounce floods the DHT nodes closest to the release's swarm ID with
// announcements of Attack.FakePorts ports of its own address, round after
// round, so that the fakes stay the most recently announced.
func (h *hostile) fakeAnnounce(rel *hostileRelease) {
	ih := krpc.ID(release.SwarmIDOf(rel.sm.ID))
	for h.ctx.Err() == nil {
		var wg sync.WaitGroup
		for _, t := range h.dhtTargets {
			wg.Go(func() { h.fakeAnnounceTo(ih, t) })
		}
		wg.Wait()
		if !h.wait(time.Second) {
			return
		}
	}
}

func (h *hostile) fakeAnnounceTo(ih krpc.ID, t netip.AddrPort) {
	addr := dht.NewAddr(net.UDPAddrFromAddrPort(t))
	res := h.dht.Query(h.ctx, addr, "get_peers", dht.QueryInput{MsgArgs: krpc.MsgArgs{InfoHash: ih}})
	if res.Err != nil || res.Reply.R == nil || res.Reply.R.Token == nil {
		return
	}
	token := *res.Reply.R.Token
	for i := range h.attack.FakePorts {
		if h.ctx.Err() != nil {
			return
		}
		port := fakePortBase + i
		h.attacks.fakeSent.Add(1)
		r := h.dht.Query(h.ctx, addr, "announce_peer", dht.QueryInput{
			MsgArgs:  krpc.MsgArgs{InfoHash: ih, Port: &port, Token: token},
			NumTries: 1,
		})
		if r.ToError() == nil {
			h.attacks.fakeAccepted.Add(1)
		}
	}
}

// closestDHT returns the DHT addresses of the k nodes whose IDs are
// closest to target, from ids and addrs (same order).
func closestDHT(target [20]byte, ids [][20]byte, addrs []netip.AddrPort, k int) []netip.AddrPort {
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		for j := range target {
			da, db := ids[a][j]^target[j], ids[b][j]^target[j]
			if da != db {
				return int(da) - int(db)
			}
		}
		return 0
	})
	var out []netip.AddrPort
	for _, i := range idx[:min(k, len(idx))] {
		out = append(out, addrs[i])
	}
	return out
}

// attackReport fills the report's attack counts; nil without abusive
// hostile peers.
func (r *run) attackReport() *AttackReport {
	var a AttackReport
	for _, k := range r.plan.hostile {
		switch k {
		case Staller:
			a.Stallers++
		case Churner:
			a.Churners++
		case FakeAnnouncer:
			a.FakeAnnouncers++
		}
	}
	if a.Stallers+a.Churners+a.FakeAnnouncers == 0 {
		return nil
	}
	c := &r.attacks
	a.StallConnections, a.StalledAnswers, a.StalledCut = c.stallConns.Load(), c.stalled.Load(), c.stallCut.Load()
	a.StalledRefused, a.StalledBytes = c.stallRefused.Load(), c.stallBytes.Load()
	a.ChurnDials, a.ChurnConnections, a.ChurnRefused = c.churnDials.Load(), c.churnConns.Load(), c.churnRefused.Load()
	a.ChurnDropped, a.ChurnFailed = c.churnDropped.Load(), c.churnFailed.Load()
	a.FakeAnnouncements, a.FakeAccepted = c.fakeSent.Load(), c.fakeAccepted.Load()
	a.FakeEvicted, a.FakeStoredMax = r.fakeStored()
	return &a
}

// fakeStored returns how many announced peers the honest DHT nodes' peer
// stores dropped for the per-address cap, and the most ports of one fake
// announcer's address that one of them holds for the release.
func (r *run) fakeStored() (evicted int64, most int) {
	fake := map[netip.Addr]bool{}
	for _, h := range r.hostile {
		if h.kind == FakeAnnouncer {
			fake[h.addr] = true
		}
	}
	if len(fake) == 0 {
		return 0, 0
	}
	sid := release.SwarmIDOf(r.published())
	count := func(peers []netip.AddrPort) {
		per := map[netip.Addr]int{}
		for _, ap := range peers {
			if fake[ap.Addr()] {
				per[ap.Addr()]++
				most = max(most, per[ap.Addr()])
			}
		}
	}
	for _, b := range r.boots {
		evicted += b.Stats().PeersCapped
		count(b.SwarmPeers(sid))
	}
	for _, n := range r.nodes {
		n.mu.Lock()
		nn := n.net
		n.mu.Unlock()
		if nn != nil {
			evicted += nn.Stats().PeersCapped
			count(nn.SwarmPeers(sid))
		}
	}
	return evicted, most
}
