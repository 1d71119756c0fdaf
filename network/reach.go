package network

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
)

// Errors of NAT traversal, for errors.Is.
var (
	// ErrPunchFailed means no punch packet of the other side arrived in
	// time: the NATs of the two sides do not let a direct path open.
	ErrPunchFailed = errors.New("network: hole punch failed")
	// ErrNotRegistered means the rendezvous does not know the target: it has
	// not heard from it recently.
	ErrNotRegistered = errors.New("network: target not registered at the rendezvous")
	// ErrRelayRefused means the relay does not relay (not opted in, full)
	// or does not know the target.
	ErrRelayRefused = errors.New("network: relay refused")
	// ErrPeerSilent means a peer did not answer a reach request in time.
	ErrPeerSilent = errors.New("network: no answer to reach request")
	// ErrReachClosed means the Reach has been closed.
	ErrReachClosed = errors.New("network: reach closed")
	// ErrUnreachable means a node behind NAT could be reached neither by a
	// punch nor through a relay.
	ErrUnreachable = errors.New("network: node behind NAT unreachable")
)

// Mapping is what a node knows of the NAT in front of its QUIC socket,
// learnt from the addresses peers report seeing.
type Mapping uint8

const (
	// MappingUnknown means fewer than two peers have reported, or none.
	MappingUnknown Mapping = iota
	// MappingNone means peers see the socket's own address: no NAT.
	MappingNone
	// MappingStable means two or more peers see the same public address and
	// port: an endpoint-independent mapping, which hole punching can use.
	MappingStable
	// MappingVaries means peers see different public ports: an
	// endpoint-dependent (symmetric) mapping.
	MappingVaries
)

var mappingNames = [...]string{"unknown", "none", "stable", "varies"}

func (m Mapping) String() string {
	if int(m) < len(mappingNames) {
		return mappingNames[m]
	}
	return fmt.Sprintf("Mapping(%d)", uint8(m))
}

// Method is how one node reaches another.
type Method uint8

const (
	// Direct: dial the announced address.
	Direct Method = iota
	// Punch: open a path by hole punching through a rendezvous.
	Punch
	// Relay: go through a relay, which forwards packets it cannot read.
	Relay
)

var methodNames = [...]string{"direct", "punch", "relay"}

func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return fmt.Sprintf("Method(%d)", uint8(m))
}

// Plan returns the first method worth trying from a node whose mapping is
// self to a node whose mapping is peer. A node without NAT is dialled
// directly. Two varying (symmetric) mappings never punch: neither side can
// know the port the other's NAT will pick. Every other pair is worth one
// punch, and the relay is the fallback when it fails (a port-restricted
// filter against a symmetric mapping looks like any stable mapping from
// outside, so that pair learns it only by failing).
func Plan(self, peer Mapping) Method {
	switch {
	case peer == MappingNone:
		return Direct
	case self == MappingVaries && peer == MappingVaries:
		return Relay
	}
	return Punch
}

// ReachConfig configures a Reach. The zero value is usable.
type ReachConfig struct {
	// Logger receives debug logs. Nil means silent.
	Logger *slog.Logger
	// PunchInterval is the gap between punch packets. Default 50ms.
	PunchInterval time.Duration
	// PunchTimeout is how long a punch waits for the other side's packet.
	// Default 3s.
	PunchTimeout time.Duration
	// RequestTimeout is how long an observe or connect request waits for
	// its answer, resent every RequestTimeout/4. Default 2s.
	RequestTimeout time.Duration
	// RegistrationTTL is how long this node, as a rendezvous, keeps a node
	// it heard an observe request from. Default 90s; nodes behind NAT
	// refresh every KeepAlive.
	RegistrationTTL time.Duration
	// KeepAlive is how often Keep refreshes the node's registrations (and
	// with them its NAT mappings towards its rendezvous). Default 20s, below
	// the shortest common NAT timeout of 30s.
	KeepAlive time.Duration
	// IntroduceRate limits the introductions this node makes for others,
	// per second. Default 50, burst 20.
	IntroduceRate float64
	// Relay opts this node in to relaying for pairs that cannot punch.
	// RelayRate caps the bytes per second it forwards for one node; 0
	// means 256 KiB/s. MaxRelays bounds the sessions at once; default 64.
	Relay     bool
	RelayRate int
	MaxRelays int
	// MaxReservations bounds the nodes behind NAT a relay offers to keep
	// a reservation for (they name it as their relay); default 256.
	MaxReservations int
}

func (c *ReachConfig) populate() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	def(&c.PunchInterval, 50*time.Millisecond)
	def(&c.PunchTimeout, 3*time.Second)
	def(&c.RequestTimeout, 2*time.Second)
	def(&c.RegistrationTTL, 90*time.Second)
	def(&c.KeepAlive, 20*time.Second)
	if c.IntroduceRate <= 0 {
		c.IntroduceRate = 50
	}
	if c.RelayRate <= 0 {
		c.RelayRate = 256 << 10
	}
	if c.MaxRelays <= 0 {
		c.MaxRelays = 64
	}
	if c.MaxReservations <= 0 {
		c.MaxReservations = 256
	}
}

// maxRegistrations bounds the nodes a rendezvous keeps; maxObservers the
// observations a node keeps of itself.
const (
	maxRegistrations = 4096
	maxObservers     = 64
)

// registration is a node that sent this node an observe request.
type registration struct {
	seen    time.Time
	mapping Mapping
	relay   netip.AddrPort // the relay it keeps a reservation with, if any
	atRelay netip.AddrPort // its address as that relay sees it
}

// pending is a request waiting for its answer.
type pending struct {
	ch chan reachMsg // buffered 1
}

// punchSession is one hole punch, from either side.
type punchSession struct {
	peer  netip.AddrPort // where this side sends its punch packets
	found chan netip.AddrPort
	once  sync.Once
}

// Reach runs rpe's NAT-traversal protocol on the QUIC socket of a node: it
// answers peers that ask which address they are seen from, learns its own
// public address the same way, introduces registered nodes to each other
// (acting as rendezvous), punches holes, and relays (see relay.go). Its
// packets are not QUIC (their first byte has its two top bits clear), so
// quic-go hands them to ReadNonQUICPacket, and Reach is the only reader of
// those on the transport. The byte format is in docs/FORMATS.md.
type Reach struct {
	cfg   ReachConfig
	log   *slog.Logger
	tr    *quic.Transport
	local netip.AddrPort
	intro *rate.Limiter
	relay *relayer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	punched, punchFailed, introduced atomic.Int64
	relayed, relayFailed, relayedIn  atomic.Int64

	mu         sync.Mutex
	asked      map[netip.AddrPort]time.Time      // ObservePeer: when
	observed   map[netip.AddrPort]netip.AddrPort // observer → what it saw
	lastSeen   netip.AddrPort                    // the newest observation
	registered map[netip.AddrPort]registration   // as rendezvous
	pending    map[uint64]*pending
	sessions   map[uint64]*punchSession
	// relays holds the observers that offered to relay for this node, and
	// when they last said so; reservation is the one this node names as its
	// relay (see Tend).
	relays      map[netip.AddrPort]time.Time
	reservation netip.AddrPort
	// punchedFrom holds the addresses punches reached this node from, so
	// that a connection accepted from one counts as punched (PathOf).
	punchedFrom map[netip.AddrPort]time.Time
}

// NewReach starts the protocol on tr, whose socket is bound to local. Close
// it before the transport.
func NewReach(tr *quic.Transport, local netip.AddrPort, cfg ReachConfig) *Reach {
	cfg.populate()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reach{
		cfg:         cfg,
		log:         cfg.Logger,
		tr:          tr,
		local:       local,
		intro:       rate.NewLimiter(rate.Limit(cfg.IntroduceRate), 20),
		ctx:         ctx,
		cancel:      cancel,
		observed:    make(map[netip.AddrPort]netip.AddrPort),
		asked:       make(map[netip.AddrPort]time.Time),
		registered:  make(map[netip.AddrPort]registration),
		pending:     make(map[uint64]*pending),
		sessions:    make(map[uint64]*punchSession),
		relays:      make(map[netip.AddrPort]time.Time),
		punchedFrom: make(map[netip.AddrPort]time.Time),
	}
	r.relay = newRelayer(r)
	r.wg.Add(1)
	go r.read()
	return r
}

// Close stops the reader and every punch, relay and keepalive; it waits for
// them.
func (r *Reach) Close() error {
	r.cancel()
	r.relay.close()
	r.wg.Wait()
	return nil
}

// read hands every non-QUIC packet to handle.
func (r *Reach) read() {
	defer r.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := r.tr.ReadNonQUICPacket(r.ctx, buf)
		if err != nil {
			return // closed
		}
		src := addrPortOfNet(from)
		// The message's payload outlives this loop (handle passes it to
		// waiting requests), so it must not alias buf. Reach packets are
		// few: a copy per packet costs nothing that matters.
		m, err := decodeReach(bytes.Clone(buf[:n]))
		if err != nil {
			r.log.Debug("reach: dropped packet", "from", src, "err", err)
			continue
		}
		r.handle(src, m)
	}
}

func (r *Reach) send(to netip.AddrPort, m reachMsg) {
	if _, err := r.tr.WriteTo(m.encode(), net.UDPAddrFromAddrPort(to)); err != nil {
		r.log.Debug("reach: send", "to", to, "type", m.typ, "err", err)
	}
}

func (r *Reach) handle(src netip.AddrPort, m reachMsg) {
	switch m.typ {
	case msgObserve:
		_, self := r.Public()
		r.mu.Lock()
		if _, ok := r.registered[src]; ok || len(r.registered) < maxRegistrations || r.evictRegistration() {
			reg := registration{seen: time.Now(), mapping: m.mapping}
			if m.addr.IsValid() {
				reg.relay = m.addr
				reg.atRelay, _, _ = readAddr(m.payload) // checked by decodeReach
			}
			r.registered[src] = reg
		}
		offer := r.cfg.Relay && self != MappingStable && self != MappingVaries &&
			(r.isSelf(m.addr) || r.reservations() < r.cfg.MaxReservations)
		r.mu.Unlock()
		var flags byte
		if offer {
			flags |= observedRelays
		}
		r.send(src, reachMsg{typ: msgObserved, nonce: m.nonce, addr: src, payload: []byte{flags}})
	case msgObserved, msgIntroduced, msgRefused, msgRelayOK:
		r.mu.Lock()
		p := r.pending[m.nonce]
		r.mu.Unlock()
		if p != nil {
			m.from = src
			select {
			case p.ch <- m:
			default:
			}
		}
	case msgConnect:
		r.introduce(src, m)
	case msgIntroduce:
		r.mu.Lock()
		_, ours := r.observed[src] // only our rendezvous may introduce
		_, dup := r.sessions[m.nonce]
		r.mu.Unlock()
		if !ours || dup || !m.addr.IsValid() {
			return
		}
		s := &punchSession{peer: m.addr, found: make(chan netip.AddrPort, 1)}
		r.mu.Lock()
		r.sessions[m.nonce] = s
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.punch(r.ctx, m.nonce, s)
		}()
	case msgPunch, msgPunchAck:
		r.mu.Lock()
		s := r.sessions[m.nonce]
		r.mu.Unlock()
		if s == nil {
			return
		}
		if m.typ == msgPunch {
			r.send(src, reachMsg{typ: msgPunchAck, nonce: m.nonce})
		}
		r.mu.Lock()
		if len(r.punchedFrom) >= maxRegistrations {
			clear(r.punchedFrom)
		}
		r.punchedFrom[src] = time.Now()
		r.mu.Unlock()
		s.once.Do(func() { s.found <- src })
	default:
		r.relay.handle(src, m)
	}
}

// evictRegistration drops the stalest registration; it reports whether it
// freed room. The caller holds r.mu.
func (r *Reach) evictRegistration() bool {
	var oldest netip.AddrPort
	var at time.Time
	for a, reg := range r.registered {
		if !oldest.IsValid() || reg.seen.Before(at) {
			oldest, at = a, reg.seen
		}
	}
	if !oldest.IsValid() {
		return false
	}
	delete(r.registered, oldest)
	return true
}

// lookup returns a fresh registration.
func (r *Reach) lookup(a netip.AddrPort) (registration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.registered[a]
	if ok && time.Since(reg.seen) > r.cfg.RegistrationTTL {
		delete(r.registered, a)
		return reg, false
	}
	return reg, ok
}

// introduce answers a connect request as rendezvous: it tells the target
// who wants to reach it and the requester where the target is.
func (r *Reach) introduce(src netip.AddrPort, m reachMsg) {
	reg, ok := r.lookup(m.addr)
	if !ok || !r.intro.Allow() {
		r.send(src, reachMsg{typ: msgRefused, nonce: m.nonce})
		return
	}
	r.introduced.Add(1)
	r.send(m.addr, reachMsg{typ: msgIntroduce, nonce: m.nonce, addr: src, mapping: m.mapping})
	var relay []byte
	if reg.relay.IsValid() && reg.atRelay.IsValid() {
		relay = appendRelayRef(nil, reg.relay, reg.atRelay)
	}
	r.send(src, reachMsg{typ: msgIntroduced, nonce: m.nonce, addr: m.addr, mapping: reg.mapping, payload: relay})
}

// isSelf reports whether a, as another node names it, is this node's QUIC
// socket.
func (r *Reach) isSelf(a netip.AddrPort) bool {
	return a.IsValid() && (a == r.local || r.local.Addr().IsUnspecified() && a.Port() == r.local.Port())
}

// reservations counts the registered nodes that name this node as their
// relay. The caller holds r.mu.
func (r *Reach) reservations() int {
	n := 0
	for _, reg := range r.registered {
		if r.isSelf(reg.relay) {
			n++
		}
	}
	return n
}

// request sends m until an answer with its nonce arrives, ctx ends or the
// request times out.
func (r *Reach) request(ctx context.Context, to netip.AddrPort, m reachMsg) (reachMsg, error) {
	p := &pending{ch: make(chan reachMsg, 1)}
	r.mu.Lock()
	r.pending[m.nonce] = p
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, m.nonce)
		r.mu.Unlock()
	}()
	deadline := time.NewTimer(r.cfg.RequestTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(r.cfg.RequestTimeout / 4)
	defer tick.Stop()
	for {
		r.send(to, m)
		select {
		case a := <-p.ch:
			return a, nil
		case <-tick.C:
		case <-deadline.C:
			return reachMsg{}, fmt.Errorf("%s to %s: %w", m.typ, to, ErrPeerSilent)
		case <-ctx.Done():
			return reachMsg{}, ctx.Err()
		case <-r.ctx.Done():
			return reachMsg{}, ErrReachClosed
		}
	}
}

// Observe asks peer which address it sees this node's QUIC socket at, and
// registers this node with it: as rendezvous, peer can then introduce
// others to this node for RegistrationTTL.
func (r *Reach) Observe(ctx context.Context, peer netip.AddrPort) (netip.AddrPort, error) {
	_, mapping := r.Public()
	req := reachMsg{typ: msgObserve, nonce: newNonce(), mapping: mapping}
	r.mu.Lock()
	if res := r.reservation; res.IsValid() && r.observed[res].IsValid() {
		req.addr, req.payload = res, appendAddr(nil, r.observed[res])
	}
	r.mu.Unlock()
	a, err := r.request(ctx, peer, req)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !a.addr.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("observe via %s: empty answer", peer)
	}
	r.mu.Lock()
	if len(a.payload) > 0 && a.payload[0]&observedRelays != 0 {
		if len(r.relays) >= maxObservers {
			clear(r.relays)
		}
		r.relays[peer] = time.Now()
	} else {
		delete(r.relays, peer)
	}
	if _, ok := r.observed[peer]; !ok && len(r.observed) >= maxObservers {
		for k := range r.observed { // drop one, any
			delete(r.observed, k)
			break
		}
	}
	r.observed[peer] = a.addr
	r.lastSeen = a.addr
	r.mu.Unlock()
	return a.addr, nil
}

// Keep observes peers now and every KeepAlive until ctx ends or the Reach
// closes, so that the node stays registered with them and its NAT keeps the
// mappings towards them. It returns at once.
func (r *Reach) Keep(ctx context.Context, peers ...netip.AddrPort) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(r.cfg.KeepAlive)
		defer t.Stop()
		for {
			for _, p := range peers {
				if _, err := r.Observe(ctx, p); err != nil {
					r.log.Debug("reach: keepalive", "peer", p, "err", err)
				}
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			case <-r.ctx.Done():
				return
			}
		}
	}()
}

// Public returns the newest public address peers reported for this node's
// QUIC socket and what the reports say about the NAT in front of it.
func (r *Reach) Public() (netip.AddrPort, Mapping) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.observed) == 0 {
		return netip.AddrPort{}, MappingUnknown
	}
	seen := make(map[netip.AddrPort]bool, len(r.observed))
	for _, a := range r.observed {
		seen[a] = true
	}
	switch {
	case len(seen) > 1:
		return r.lastSeen, MappingVaries
	case r.lastSeen == r.local || (r.local.Addr().IsUnspecified() && r.lastSeen.Port() == r.local.Port()):
		return r.lastSeen, MappingNone
	case len(r.observed) > 1:
		return r.lastSeen, MappingStable
	}
	return r.lastSeen, MappingUnknown
}

// Punch opens a direct path to target, a node registered at the rendezvous
// via (target is its address as via sees it). Both sides send punch packets
// from their QUIC sockets at once; Punch returns the address the target's
// packets came from, which the caller then dials with QUIC on the same
// transport. It fails with ErrNotRegistered if via does not know target and
// with ErrPunchFailed if no packet of the target got through.
func (r *Reach) Punch(ctx context.Context, via, target netip.AddrPort) (netip.AddrPort, error) {
	got, _, err := r.punchVia(ctx, via, target)
	return got, err
}

// errTargetDirect means a rendezvous reports that the target has no NAT:
// it is dialled directly, without a punch.
var errTargetDirect = errors.New("network: target has no NAT")

// relayRef names a relay and a node's address as that relay sees it (for a
// node behind a symmetric NAT, not the address others see).
type relayRef struct {
	relay, target netip.AddrPort
	direct        bool // no relay: a rendezvous said the target has no NAT
}

func (f relayRef) valid() bool { return f.relay.IsValid() && f.target.IsValid() }

// punchVia is Punch that also returns the relay the rendezvous says the
// target keeps a reservation with (invalid if none or not told), so a
// failed punch can fall back to it. It does not punch when both sides map
// endpoint-dependently (Plan says Relay): that fails with ErrPunchFailed
// at once.
func (r *Reach) punchVia(ctx context.Context, via, target netip.AddrPort) (netip.AddrPort, relayRef, error) {
	_, mapping := r.Public()
	nonce := newNonce()
	s := &punchSession{found: make(chan netip.AddrPort, 1)}
	r.mu.Lock()
	r.sessions[nonce] = s
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.sessions, nonce)
		r.mu.Unlock()
	}()
	a, err := r.request(ctx, via, reachMsg{typ: msgConnect, nonce: nonce, addr: target, mapping: mapping})
	if err != nil {
		return netip.AddrPort{}, relayRef{}, fmt.Errorf("punch to %s via %s: %w", target, via, err)
	}
	if a.typ == msgRefused {
		return netip.AddrPort{}, relayRef{}, fmt.Errorf("punch to %s via %s: %w", target, via, ErrNotRegistered)
	}
	var relay relayRef
	if len(a.payload) > 0 {
		relay.relay, relay.target, _ = readRelayRef(a.payload) // checked by decodeReach
	}
	if a.mapping == MappingNone {
		return netip.AddrPort{}, relay, errTargetDirect
	}
	if Plan(mapping, a.mapping) == Relay {
		return netip.AddrPort{}, relay, fmt.Errorf("punch to %s via %s: both map per destination: %w", target, via, ErrPunchFailed)
	}
	s.peer = a.addr
	r.log.Debug("reach: punching", "target", target, "via", via, "peer_mapping", a.mapping)
	if got, ok := r.punch(ctx, nonce, s); ok {
		return got, relay, nil
	}
	if err := ctx.Err(); err != nil {
		return netip.AddrPort{}, relay, err
	}
	return netip.AddrPort{}, relay, fmt.Errorf("punch to %s via %s: %w", target, via, ErrPunchFailed)
}

// punch sends punch packets to s.peer until the other side's packet
// arrives or PunchTimeout passes; a few more follow the first packet seen,
// in case this side's were the ones lost.
func (r *Reach) punch(ctx context.Context, nonce uint64, s *punchSession) (netip.AddrPort, bool) {
	timeout := time.NewTimer(r.cfg.PunchTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(r.cfg.PunchInterval)
	defer tick.Stop()
	defer func() {
		r.mu.Lock()
		if r.sessions[nonce] == s {
			delete(r.sessions, nonce)
		}
		r.mu.Unlock()
	}()
	for {
		r.send(s.peer, reachMsg{typ: msgPunch, nonce: nonce})
		select {
		case got := <-s.found:
			r.send(got, reachMsg{typ: msgPunchAck, nonce: nonce})
			return got, true
		case <-tick.C:
		case <-timeout.C:
			return netip.AddrPort{}, false
		case <-ctx.Done():
			return netip.AddrPort{}, false
		case <-r.ctx.Done():
			return netip.AddrPort{}, false
		}
	}
}

func newNonce() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}
