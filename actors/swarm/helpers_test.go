package swarm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// waitFor bounds every wait in these tests; nothing sleeps.
const waitFor = 20 * time.Second

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testRelease is a signed release of four small chunks and its bytes.
type testRelease struct {
	sk   ed25519.PrivateKey
	data []byte
	sm   *release.SignedManifest
}

func newTestRelease(t testing.TB) testRelease {
	t.Helper()
	sk := newKey(t)
	data := make([]byte, 3*release.MinChunkSize+100)
	rand.Read(data)
	m, err := release.BuildManifest(bytes.NewReader(data), release.BuildOptions{
		App: "app", Platform: "linux-amd64", Version: "1.0.0", ChunkSize: release.MinChunkSize,
		Created: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := release.SignManifest(m, sk)
	if err != nil {
		t.Fatal(err)
	}
	return testRelease{sk: sk, data: data, sm: sm}
}

// rig is one swarm on loopback UDP with its own store, under a parent actor
// that records what the swarm sends it and, after join, is its subscriber.
type rig struct {
	t      testing.TB
	sys    *actor.ActorSystem
	parent *actor.PID
	swarm  *actor.PID
	node   *network.Node
	store  *store.Store
	key    ed25519.PrivateKey
	ctr    *counters
	rec    *recorder
	syncs  int // Haves sent by settled
}

// recorder is the parent's record of what it received.
type recorder struct {
	mu      sync.Mutex
	peerHas map[wire.NodeID]int
	records []*RecordGossiped
	changed chan struct{} // a value after each change
}

type (
	spawnSwarm struct{ props *actor.Props }
	joinVia    struct{ id release.ManifestID }
)

type parentActor struct {
	rec  *recorder
	pids chan *actor.PID
	kid  *actor.PID
}

func (p *parentActor) Receive(ctx actor.Context) {
	r := p.rec
	switch m := ctx.Message().(type) {
	case *spawnSwarm:
		p.kid = ctx.Spawn(m.props)
		p.pids <- p.kid
		return
	case *joinVia:
		ctx.Request(p.kid, &Join{ID: m.id})
		return
	case *PeerHas:
		r.mu.Lock()
		r.peerHas[m.Peer]++
		r.mu.Unlock()
	case *RecordGossiped:
		r.mu.Lock()
		r.records = append(r.records, m)
		r.mu.Unlock()
	default:
		return
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// newRig starts a swarm holding the given releases in full. The network
// node has no starting nodes: peers connect to it directly.
func newRig(t testing.TB, cfg Config, hold ...testRelease) *rig {
	t.Helper()
	node, err := network.New(context.Background(), network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	r := &rig{t: t, node: node, key: newKey(t), rec: &recorder{peerHas: map[wire.NodeID]int{}, changed: make(chan struct{}, 1)}}
	var pub release.PublicKey
	if len(hold) > 0 {
		pub = release.PublicKeyOf(hold[0].sk)
	}
	st, err := store.Open(t.TempDir(), pub, release.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, h := range hold {
		path := filepath.Join(t.TempDir(), "artifact")
		if err := os.WriteFile(path, h.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddFile(h.sm, path); err != nil {
			t.Fatal(err)
		}
	}
	r.store = st
	cfg.Node, cfg.Store, cfg.NodeKey = node, st, r.key
	props, ctr := newProps(cfg)
	r.ctr = ctr
	r.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	pids := make(chan *actor.PID, 1)
	pa := &parentActor{rec: r.rec, pids: pids}
	r.parent = r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pa }))
	r.sys.Root.Send(r.parent, &spawnSwarm{props: props})
	r.swarm = <-pids
	t.Cleanup(func() {
		if err := r.sys.Root.StopFuture(r.parent).Wait(); err != nil {
			t.Errorf("stop swarm: %v", err)
		}
		r.sys.Shutdown()
	})
	return r
}

// join makes the parent the subscriber for release id.
func (r *rig) join(id release.ManifestID) { r.sys.Root.Send(r.parent, &joinVia{id: id}) }

// id is the swarm's node ID.
func (r *rig) id() wire.NodeID { return wire.NodeIDOf(r.key.Public().(ed25519.PublicKey)) }

// waitUntil waits until cond holds (checked after each change the parent
// records) and fails the test at the deadline.
func (r *rig) waitUntil(what string, cond func(*recorder) bool) {
	r.t.Helper()
	deadline := time.After(waitFor)
	for {
		r.rec.mu.Lock()
		ok := cond(r.rec)
		r.rec.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.rec.changed:
		case <-deadline:
			r.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// nopHandler serves nothing and ignores one-way messages.
type nopHandler struct{}

func (nopHandler) Manifest(release.ManifestID) ([]byte, error) { return nil, wire.ErrNotFound }
func (nopHandler) Chunk(release.ManifestID, uint32, []byte) ([]byte, error) {
	return nil, wire.ErrNotFound
}
func (nopHandler) Notify(wire.NodeID, wire.Message) {}

// dial connects a fresh peer on its own loopback socket to the rig's swarm
// and serves it with nopHandler.
func (r *rig) dial(t testing.TB) *wire.Conn {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: uc}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := wire.Dial(ctx, tr, net.UDPAddrFromAddrPort(r.node.QUICAddr()), newKey(t), r.id(), wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Serve(context.Background(), nopHandler{})
	}()
	t.Cleanup(func() {
		c.Close(wire.CodeNone, "test over")
		<-done
		tr.Close()
		uc.Close()
	})
	return c
}

// hostile makes the parent the subscriber for release joined, connects a
// peer that has sent its Hello, and returns it with a context for the
// test's sends.
func (r *rig) hostile(t testing.TB, joined release.ManifestID) (*wire.Conn, context.Context) {
	t.Helper()
	r.join(joined)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	c := r.dial(t)
	if err := c.Send(ctx, &wire.Hello{}); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}

// settled waits until the swarm has taken every message c sent so far. The
// swarm takes a peer's messages in order, so it sends a Have of release
// joined that it never sent before and waits for the news of it.
func (r *rig) settled(ctx context.Context, c *wire.Conn, joined release.ManifestID) {
	r.t.Helper()
	id := c.LocalID()
	r.rec.mu.Lock()
	before := r.rec.peerHas[id]
	r.rec.mu.Unlock()
	r.syncs++
	if err := c.Send(ctx, &wire.Have{ID: joined, Index: 1<<24 + uint32(r.syncs)}); err != nil {
		r.t.Fatal(err)
	}
	r.waitUntil("the Have sent last", func(rec *recorder) bool { return rec.peerHas[id] > before })
}
