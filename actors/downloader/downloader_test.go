package downloader

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/actors/swarm"
	"github.com/rpe-project/engine/actors/verifier"
	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// checkReq is a CheckChunk the fake verifier received, with who to answer.
type checkReq struct {
	from *actor.PID
	msg  *verifier.CheckChunk
}

// fakeVerifier hands every CheckChunk to the test, which decides the
// answer, and records the other requests in order.
type fakeVerifier struct {
	checks chan checkReq
	others chan any
	sm     *release.SignedManifest
}

func (f *fakeVerifier) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *verifier.CheckChunk:
		f.checks <- checkReq{from: ctx.Sender(), msg: m}
	case *verifier.CheckManifest:
		// The stored manifest is re-checked on every fetch; accept it
		// (before telling the test, so the answer is queued first).
		if f.sm != nil && bytes.Equal(m.Raw, f.sm.Raw) {
			ctx.Respond(&verifier.ManifestAccepted{Manifest: f.sm, Peer: m.Peer})
		}
		f.others <- m
	case *verifier.Finish:
		f.others <- m
	}
}

// sink stands in for the swarm: it makes the requests the downloader asks
// of the peers connectPeer connected (real QUIC connections), answering as
// the swarm does, swallows the rest, and passes Misbehaved reports to the
// test when it listens.
type sink struct {
	misbehaved chan *swarm.Misbehaved
	conns      *conns
}

// conns are the test's connections by peer, shared with the sink.
type conns struct {
	mu sync.Mutex
	m  map[wire.NodeID]*wire.Conn
}

func (c *conns) get(id wire.NodeID) *wire.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

func (s sink) Receive(ctx actor.Context) {
	sys, to := ctx.ActorSystem(), ctx.Sender()
	switch m := ctx.Message().(type) {
	case *swarm.Misbehaved:
		if s.misbehaved != nil {
			s.misbehaved <- m
		}
	case *swarm.GetChunk:
		conn := s.conns.get(m.Peer)
		go func() {
			if conn == nil {
				sys.Root.Send(to, &swarm.ChunkFailed{Peer: m.Peer, ID: m.ID, Index: m.Index, Err: swarm.ErrNoPeer})
				return
			}
			rctx, cancel := context.WithTimeout(context.Background(), m.Timeout)
			defer cancel()
			buf := make([]byte, m.Size)
			if err := conn.GetChunk(rctx, m.ID, uint32(m.Index), buf); err != nil {
				sys.Root.Send(to, &swarm.ChunkFailed{Peer: m.Peer, ID: m.ID, Index: m.Index, Err: err})
				return
			}
			sys.Root.Send(to, &swarm.ChunkArrived{Peer: m.Peer, ID: m.ID, Index: m.Index, Data: buf})
		}()
	case *swarm.GetManifest:
		conn := s.conns.get(m.Peer)
		go func() {
			if conn == nil {
				sys.Root.Send(to, &swarm.ManifestArrived{Peer: m.Peer, ID: m.ID, Err: swarm.ErrNoPeer})
				return
			}
			rctx, cancel := context.WithTimeout(context.Background(), m.Timeout)
			defer cancel()
			raw, err := conn.GetManifest(rctx, m.ID)
			sys.Root.Send(to, &swarm.ManifestArrived{Peer: m.Peer, ID: m.ID, Raw: raw, Err: err})
		}()
	}
}

type rig struct {
	t      *testing.T
	sys    *actor.ActorSystem
	pid    *actor.PID
	checks chan checkReq
	others chan any
	st     *store.Store
	rel    *store.Release
	sm     *release.SignedManifest
	data   []byte
	panic  atomic.Bool  // the next *Stats sent with Send panics
	starts atomic.Int32 // how many times the downloader started (1 + restarts)
	// retry, when set before the downloader starts, is its Config.Retry.
	retry time.Duration
	// ticks receives a value (when there is room) at every scheduling tick.
	ticks chan struct{}
	// answers receives (when there is room) every answer to a chunk
	// request as the downloader starts handling it.
	answers chan *chunkArrived
	// misbehaved receives what the downloader reports to the swarm.
	misbehaved chan *swarm.Misbehaved
	conns      conns
}

// newRig starts a downloader; with fetch it is fetching the rig's release.
func newRig(t *testing.T, fetch bool) *rig { return newRigWith(t, fetch, nil) }

// newRigWith is newRig with a hook run on the store's release before the
// downloader starts.
func newRigWith(t *testing.T, fetch bool, prepare func(r *rig)) *rig {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	s[0] = 7
	sk := ed25519.NewKeyFromSeed(s)
	r := &rig{t: t, checks: make(chan checkReq, 16), others: make(chan any, 16),
		ticks: make(chan struct{}, 1), answers: make(chan *chunkArrived, 1024), misbehaved: make(chan *swarm.Misbehaved, 16)}
	r.data = make([]byte, 3*release.MinChunkSize)
	rand.NewChaCha8([32]byte{1}).Read(r.data)
	m, err := release.BuildManifest(bytes.NewReader(r.data), release.BuildOptions{
		App: "app", Platform: "linux-amd64", Version: "2.0.0", ChunkSize: release.MinChunkSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.sm, err = release.SignManifest(m, sk); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if r.st, err = store.Open(dir, release.PublicKeyOf(sk), release.Limits{}, nil); err != nil {
		t.Fatal(err)
	}
	// The manifest was accepted earlier: the release is in the store.
	if r.rel, err = r.st.Add(r.sm); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(r)
	}
	r.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	ver := r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &fakeVerifier{checks: r.checks, others: r.others, sm: r.sm} }))
	sw := r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return sink{misbehaved: r.misbehaved, conns: &r.conns} }))
	r.pid = r.sys.Root.Spawn(Props(Config{
		Store: r.st, Swarm: sw, Verifier: ver, StateDir: dir, Retry: r.retry,
		FaultHook: func(msg any) {
			switch msg.(type) {
			case *actor.Started:
				r.starts.Add(1)
			case *tick:
				select {
				case r.ticks <- struct{}{}:
				default:
				}
			case *swarm.ChunkArrived, *swarm.ChunkFailed:
				a := &chunkArrived{}
				if m, ok := msg.(*swarm.ChunkFailed); ok {
					a.id, a.peer, a.index, a.err = m.ID, m.Peer, m.Index, m.Err
				} else {
					m := msg.(*swarm.ChunkArrived)
					a.id, a.peer, a.index, a.data = m.ID, m.Peer, m.Index, m.Data
				}
				select {
				case r.answers <- a:
				default:
				}
			}
			if _, ok := msg.(*Stats); ok && r.panic.CompareAndSwap(true, false) {
				panic("injected fault")
			}
		},
	}))
	t.Cleanup(func() {
		for _, p := range []*actor.PID{r.pid, ver, sw} {
			r.sys.Root.StopFuture(p).Wait()
		}
		r.sys.Shutdown()
		r.st.Close()
	})
	if fetch {
		e := release.Entry{App: m.App, Channel: m.Channel, Platform: m.Platform, Version: m.Version, ManifestID: r.sm.ID, Size: m.Size}
		r.sys.Root.Send(r.pid, &Fetch{Entry: e})
		// The stored release's manifest is checked again first.
		select {
		case m := <-r.others:
			if _, ok := m.(*verifier.CheckManifest); !ok {
				t.Fatalf("first message to the verifier was %T, want CheckManifest", m)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the stored manifest was not checked again")
		}
		r.sync()
	}
	return r
}

// sync waits until the downloader has handled everything sent before.
func (r *rig) sync() {
	r.t.Helper()
	if _, err := r.sys.Root.RequestFuture(r.pid, &Stats{}, 10*time.Second).Result(); err != nil {
		r.t.Fatalf("Stats: %v", err)
	}
}

func (r *rig) nextCheck() checkReq {
	r.t.Helper()
	select {
	case c := <-r.checks:
		return c
	case <-time.After(10 * time.Second):
		r.t.Fatal("no CheckChunk reached the verifier")
		return checkReq{}
	}
}

func (r *rig) chunk(i int) []byte {
	m := r.sm.Manifest
	off := m.ChunkOffset(i)
	return append([]byte(nil), r.data[off:off+int64(m.ChunkLen(i))]...)
}

// TestWrittenChunkIsChecked: a chunk from a peer is written to the staging
// file, checked, and marked only when the verifier agrees.
func TestWrittenChunkIsChecked(t *testing.T) {
	r := newRig(t, true)
	peer := wire.NodeID{1}
	r.sys.Root.Send(r.pid, &swarm.ChunkArrived{ID: r.sm.ID, Peer: peer, Index: 1, Data: r.chunk(1)})
	c := r.nextCheck()
	if c.msg.Index != 1 || !bytes.Equal(c.msg.Data, r.chunk(1)) || c.msg.Peer != peer || c.msg.StagingPath != r.rel.Path() {
		t.Fatalf("CheckChunk %d from %s at %s", c.msg.Index, c.msg.Peer, c.msg.StagingPath)
	}
	r.sync()
	if r.rel.Has(1) {
		t.Fatal("chunk marked before the verifier answered")
	}
	// A second copy while the first is being checked is not written.
	bad := r.chunk(1)
	bad[0] ^= 1
	r.sys.Root.Send(r.pid, &swarm.ChunkArrived{ID: r.sm.ID, Peer: wire.NodeID{2}, Index: 1, Data: bad})
	r.sync()
	if got, _ := r.rel.ReadWritten(1); !bytes.Equal(got, r.chunk(1)) {
		t.Fatal("a duplicate overwrote a chunk under check")
	}
	r.sys.Root.Send(c.from, &verifier.ChunkVerified{ID: r.sm.ID, Index: 1, Peer: peer, Size: len(c.msg.Data), Token: c.msg.Token})
	r.sync()
	if !r.rel.Has(1) {
		t.Fatal("verified chunk not marked")
	}
	// Once verified it is never written again.
	r.sys.Root.Send(r.pid, &swarm.ChunkArrived{ID: r.sm.ID, Peer: wire.NodeID{2}, Index: 1, Data: bad})
	r.sync()
	if got, _ := r.rel.ReadChunk(1, nil); !bytes.Equal(got, r.chunk(1)) {
		t.Fatal("a duplicate overwrote a verified chunk")
	}
}

// TestStaleVerifiedAfterRestart: a ChunkVerified answering a check sent by
// the downloader before it restarted must not mark bytes written after the
// restart, which the verifier never saw.
func TestStaleVerifiedAfterRestart(t *testing.T) {
	r := newRig(t, true)
	good := r.chunk(0)
	r.sys.Root.Send(r.pid, &swarm.ChunkArrived{ID: r.sm.ID, Peer: wire.NodeID{1}, Index: 0, Data: good})
	stale := r.nextCheck()

	r.panic.Store(true)
	r.sys.Root.Send(r.pid, &Stats{}) // the downloader panics and is restarted
	// The restarted downloader resumes from download.json: manifest first.
	select {
	case <-r.others:
	case <-time.After(10 * time.Second):
		t.Fatal("the restarted downloader did not resume")
	}
	r.sync()
	bad := r.chunk(0)
	bad[100] ^= 1
	r.sys.Root.Send(r.pid, &swarm.ChunkArrived{ID: r.sm.ID, Peer: wire.NodeID{2}, Index: 0, Data: bad})
	fresh := r.nextCheck()
	if !bytes.Equal(fresh.msg.Data, bad) {
		t.Fatal("second check does not carry the second copy")
	}
	// The verifier answers the old check first: those bytes were good.
	r.sys.Root.Send(stale.from, &verifier.ChunkVerified{ID: r.sm.ID, Index: 0, Peer: wire.NodeID{1}, Size: len(good)})
	r.sync()
	if !r.rel.Has(0) {
		return
	}
	got, err := r.rel.ReadChunk(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.sm.Manifest.VerifyChunk(0, got); err != nil {
		t.Fatalf("chunk 0 is marked verified but holds unchecked bytes: %v", err)
	}
}

// TestPeerHasIndexBounded: a peer's Have for an absurd index must not make
// the downloader allocate in proportion to it.
func TestPeerHasIndexBounded(t *testing.T) {
	r := newRig(t, false) // no job: a peer with a nil Conn is never asked
	peer := wire.NodeID{9}
	r.sys.Root.Send(r.pid, &swarm.PeerUp{Peer: peer})
	r.sync()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 4 {
		r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: peer, ID: release.ManifestID{byte(i)}, Index: 1<<28 + i})
	}
	r.sync()
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("four Have messages allocated %d MiB", grew>>20)
	}
}

// TestHeldReleaseRechecked: a fetch of a release already in the store (a
// resumed download, or one finished before a restart) must have its manifest
// checked again by the verifier before it is finished: the running version,
// the floor or the clock may have moved since it was first accepted.
func TestHeldReleaseRechecked(t *testing.T) {
	r := newRigWith(t, true, func(r *rig) {
		for i := range r.sm.Manifest.NumChunks() {
			if err := r.rel.WriteChunk(i, r.chunk(i)); err != nil {
				t.Fatal(err)
			}
			if err := r.rel.MarkVerified(i); err != nil {
				t.Fatal(err)
			}
		}
	})
	// newRig saw the CheckManifest; only after its answer comes Finish.
	select {
	case m := <-r.others:
		if _, ok := m.(*verifier.Finish); !ok {
			t.Fatalf("after the manifest check the verifier got %T, want *verifier.Finish", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held release was not finished")
	}
}

// peerHandler serves chunks of the rig's release to the downloader over a
// real connection, or (lacking) answers that it holds none, and records
// every chunk index it was asked for.
type peerHandler struct {
	r       *rig
	lacking bool
	mu      sync.Mutex
	asked   []uint32
	askedCh chan uint32 // when set, receives every index asked for
}

func (h *peerHandler) Manifest(id release.ManifestID) ([]byte, error) {
	if h.lacking || id != h.r.sm.ID {
		return nil, wire.ErrNotFound
	}
	return h.r.sm.Raw, nil
}

func (h *peerHandler) Chunk(id release.ManifestID, index uint32, buf []byte) ([]byte, error) {
	h.mu.Lock()
	h.asked = append(h.asked, index)
	if h.askedCh != nil {
		select {
		case h.askedCh <- index:
		default: // a test that stopped listening must not block the peer
		}
	}
	h.mu.Unlock()
	switch {
	case h.lacking || id != h.r.sm.ID:
		return nil, wire.ErrNotFound
	case int(index) >= h.r.sm.Manifest.NumChunks():
		return nil, wire.ErrBadIndex
	}
	return append(buf, h.r.chunk(int(index))...), nil
}

func (h *peerHandler) Notify(wire.NodeID, wire.Message) {}

func (h *peerHandler) askedFor() []uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.asked)
}

// loopbackTransport returns a QUIC transport on a fresh 127.0.0.1 socket.
func loopbackTransport(t *testing.T) *quic.Transport {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: uc}
	t.Cleanup(func() { tr.Close(); uc.Close() })
	return tr
}

// connectPeer starts a peer answering with h on loopback QUIC, dials it
// and tells the downloader it is up; seed picks the peer's key.
func (r *rig) connectPeer(h wire.Handler, seed byte) wire.NodeID {
	t := r.t
	t.Helper()
	key := func(b byte) ed25519.PrivateKey {
		s := make([]byte, ed25519.SeedSize)
		s[0], s[1] = 0xd0, b
		return ed25519.NewKeyFromSeed(s)
	}
	pk := key(seed)
	id := wire.NodeIDOf(pk.Public().(ed25519.PublicKey))
	ln, err := wire.Listen(loopbackTransport(t), pk, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		c.Serve(ctx, h)
	}()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, err := wire.Dial(dctx, loopbackTransport(t), ln.Addr(), key(seed+100), id, wire.Limits{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close(wire.CodeNone, "test over")
		cancel()
		ln.Close()
		<-served
	})
	r.conns.mu.Lock()
	if r.conns.m == nil {
		r.conns.m = map[wire.NodeID]*wire.Conn{}
	}
	r.conns.m[id] = conn
	r.conns.mu.Unlock()
	r.sys.Root.Send(r.pid, &swarm.PeerUp{Peer: id})
	return id
}

// TestPeerHasOutOfRange: Have messages from a peer naming chunks past the
// end of the release (just past it, and absurdly far) are ignored during a
// download: the downloader neither panics (it is never restarted) nor
// grows the peer's bitfield to the index (no allocation in proportion to
// it), never asks any peer for a chunk outside the release, and finishes
// the download from an honest peer.
func TestPeerHasOutOfRange(t *testing.T) {
	r := newRig(t, true) // the manifest is known: 3 chunks
	n := r.sm.Manifest.NumChunks()
	liar := &peerHandler{r: r, lacking: true}
	liarID := r.connectPeer(liar, 1)
	r.sync()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, i := range []int{n, n + 1, 8 * ((n + 7) / 8), n + 8, maxChunks, 1<<31 - 1, math.MaxInt, -1} {
		r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: liarID, ID: r.sm.ID, Index: i})
	}
	r.sync()
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("out-of-range Have messages allocated %d MiB", grew>>20)
	}

	honest := &peerHandler{r: r}
	honestID := r.connectPeer(honest, 2)
	r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: honestID, ID: r.sm.ID, Bitfield: []byte{0xe0}})
	// Answer every check as the real verifier would, until the whole file
	// is handed over.
	deadline := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case c := <-r.checks:
			m := c.msg
			if err := r.sm.Manifest.VerifyChunk(m.Index, m.Data); err != nil {
				r.sys.Root.Send(c.from, &verifier.ChunkRejected{ID: m.Manifest.ID, Index: m.Index, Peer: m.Peer, Size: len(m.Data), Err: err, Token: m.Token})
				continue
			}
			r.sys.Root.Send(c.from, &verifier.ChunkVerified{ID: m.Manifest.ID, Index: m.Index, Peer: m.Peer, Size: len(m.Data), Token: m.Token})
		case m := <-r.others:
			_, done = m.(*verifier.Finish)
		case <-deadline:
			t.Fatalf("download not finished: %d of %d chunks verified", r.rel.Count(), n)
		}
	}
	r.sync()
	if !r.rel.Complete() {
		t.Fatalf("Finish sent with %d of %d chunks verified", r.rel.Count(), n)
	}
	if s := r.starts.Load(); s != 1 {
		t.Fatalf("the downloader started %d times: it panicked", s)
	}
	for name, h := range map[string]*peerHandler{"lying": liar, "honest": honest} {
		for _, i := range h.askedFor() {
			if int(i) >= n {
				t.Errorf("the %s peer was asked for chunk %d of %d", name, i, n)
			}
		}
	}
	if len(honest.askedFor()) == 0 {
		t.Error("the honest peer was never asked")
	}
}

// answerChecks answers every chunk check as the real verifier would until
// the downloader sends Finish, and fails the test if that does not happen.
func (r *rig) answerChecks() {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case c := <-r.checks:
			m := c.msg
			if err := r.sm.Manifest.VerifyChunk(m.Index, m.Data); err != nil {
				r.sys.Root.Send(c.from, &verifier.ChunkRejected{ID: m.Manifest.ID, Index: m.Index, Peer: m.Peer, Size: len(m.Data), Err: err, Token: m.Token})
				continue
			}
			r.sys.Root.Send(c.from, &verifier.ChunkVerified{ID: m.Manifest.ID, Index: m.Index, Peer: m.Peer, Size: len(m.Data), Token: m.Token})
		case m := <-r.others:
			if _, done := m.(*verifier.Finish); done {
				return
			}
		case <-deadline:
			r.t.Fatalf("download not finished: %d of %d chunks verified", r.rel.Count(), r.sm.Manifest.NumChunks())
		}
	}
}

// waitAsked waits until h has been asked for every chunk in want (in any
// order, each at least once).
func waitAsked(t *testing.T, h *peerHandler, want ...uint32) {
	t.Helper()
	left := map[uint32]bool{}
	for _, i := range want {
		left[i] = true
	}
	deadline := time.After(10 * time.Second)
	for len(left) > 0 {
		select {
		case i := <-h.askedCh:
			delete(left, i)
		case <-deadline:
			t.Fatalf("peer not asked for chunks %v; asked for %v", slices.Collect(maps.Keys(left)), h.askedFor())
		}
	}
}

// waitRefusals waits until the downloader has handled n refusals from
// peer.
func (r *rig) waitRefusals(peer wire.NodeID, n int) {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for n > 0 {
		select {
		case a := <-r.answers:
			if a.peer == peer && errors.Is(a.err, wire.ErrNotFound) {
				n--
			}
		case <-deadline:
			r.t.Fatalf("%d refusals from %s not handled", n, peer)
		}
	}
	r.sync()
}

// waitTicks lets the downloader run n scheduling rounds.
func (r *rig) waitTicks(n int) {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case <-r.ticks:
		case <-deadline:
			r.t.Fatal("the downloader stopped ticking")
		}
	}
	r.sync()
}

// TestLiarLosesItsClaims: a peer that claims every chunk over a real QUIC
// connection and answers not-found for each is asked for each chunk once
// and then no more, however long the downloader goes on (its claims no
// longer count), so the chunks look as rare as they are and the honest
// seed that comes later is asked for all of them and the download ends.
func TestLiarLosesItsClaims(t *testing.T) {
	r := newRigWith(t, true, func(r *rig) { r.retry = 5 * time.Millisecond })
	n := r.sm.Manifest.NumChunks()
	liar := &peerHandler{r: r, lacking: true, askedCh: make(chan uint32, 1024)}
	liarID := r.connectPeer(liar, 1)
	r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: liarID, ID: r.sm.ID, Bitfield: []byte{0xe0}, Index: -1})
	waitAsked(t, liar, 0, 1, 2)
	// Many retry periods later it has still been asked for each chunk once.
	r.waitTicks(20)
	if got := liar.askedFor(); len(got) != n {
		t.Fatalf("the lying peer was asked for %v, want each of the %d chunks once", got, n)
	}

	seed := &peerHandler{r: r}
	seedID := r.connectPeer(seed, 2)
	r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: seedID, ID: r.sm.ID, Complete: true, Index: -1})
	r.answerChecks()
	r.sync()
	if !r.rel.Complete() {
		t.Fatalf("Finish sent with %d of %d chunks verified", r.rel.Count(), n)
	}
	if got := liar.askedFor(); len(got) != n {
		t.Errorf("the lying peer was asked for %v, want each of the %d chunks once", got, n)
	}
	if got := seed.askedFor(); len(got) < n {
		t.Errorf("the seed was asked for %v only", got)
	}
	select {
	case m := <-r.misbehaved:
		t.Errorf("peer %s reported for %v after %d false claims", m.Peer, m.Reason, n)
	default:
	}
}

// TestRepeatedFalseClaimsDropPeer: a peer that announces a chunk again
// after refusing it is believed and asked again, but one that keeps
// refusing what it announced is reported to the swarm as misbehaving and
// asked for nothing more.
func TestRepeatedFalseClaimsDropPeer(t *testing.T) {
	r := newRigWith(t, true, func(r *rig) { r.retry = 5 * time.Millisecond })
	liar := &peerHandler{r: r, lacking: true, askedCh: make(chan uint32, 1024)}
	liarID := r.connectPeer(liar, 1)
	r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: liarID, ID: r.sm.ID, Complete: true, Index: -1})
	waitAsked(t, liar, 0, 1, 2)
	r.waitRefusals(liarID, 3)
	asked := len(liar.askedFor())
	for k := 0; asked < falseClaimLimit; k++ {
		r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: liarID, ID: r.sm.ID, Index: k})
		waitAsked(t, liar, uint32(k))
		r.waitRefusals(liarID, 1)
		asked++
	}
	select {
	case m := <-r.misbehaved:
		if m.Peer != liarID || !errors.Is(m.Reason, ErrFalseClaims) {
			t.Fatalf("reported %s for %v, want %s for ErrFalseClaims", m.Peer, m.Reason, liarID)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a peer that refused %d claimed chunks was not reported", asked)
	}
	// Dropped: a further announcement makes it asked for nothing.
	r.sys.Root.Send(r.pid, &swarm.PeerHas{Peer: liarID, ID: r.sm.ID, Index: 2})
	r.waitTicks(20)
	if got := liar.askedFor(); len(got) != asked {
		t.Fatalf("the dropped peer was asked for %v after its %d false claims", got, asked)
	}
}
