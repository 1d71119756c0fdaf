package downloader

import (
	"bytes"
	"crypto/ed25519"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

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

// sink swallows what the downloader tells the swarm.
type sink struct{}

func (sink) Receive(actor.Context) {}

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
	panic  atomic.Bool // the next *Stats sent with Send panics
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
	r := &rig{t: t, checks: make(chan checkReq, 16), others: make(chan any, 16)}
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
	sw := r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return sink{} }))
	r.pid = r.sys.Root.Spawn(Props(Config{
		Store: r.st, Swarm: sw, Verifier: ver, StateDir: dir,
		FaultHook: func(msg any) {
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
	r.sys.Root.Send(r.pid, &chunkArrived{id: r.sm.ID, peer: peer, index: 1, data: r.chunk(1)})
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
	r.sys.Root.Send(r.pid, &chunkArrived{id: r.sm.ID, peer: wire.NodeID{2}, index: 1, data: bad})
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
	r.sys.Root.Send(r.pid, &chunkArrived{id: r.sm.ID, peer: wire.NodeID{2}, index: 1, data: bad})
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
	r.sys.Root.Send(r.pid, &chunkArrived{id: r.sm.ID, peer: wire.NodeID{1}, index: 0, data: good})
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
	r.sys.Root.Send(r.pid, &chunkArrived{id: r.sm.ID, peer: wire.NodeID{2}, index: 0, data: bad})
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
