package simulation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation/netsim"
	"github.com/rpe-project/engine/wire"
)

// A private scenario (Scenario.Private) gives the publisher and every
// honest node one shared secret, and adds two outsiders that know the
// publisher's public key but not the secret:
//
//   - an outsider engine: a complete node, configured like the others but
//     without the secret, that polls the record and looks for peers;
//   - an outsider client: a bare DHT node and wire client that, once the
//     release is out, is handed what it could not learn by itself (the
//     manifest ID and every insider's address) and tries everything: it
//     looks the release's public swarm ID up in the DHT, dials every
//     insider, sends a Hello and asks for the manifest and the first chunk,
//     and once more after a proof made with a wrong secret.
//
// OutsiderReport says what they got; every count must be zero.

// OutsiderReport is what the outsiders of a private scenario learned.
type OutsiderReport struct {
	// Versions counts the releases the outsider engine found (ReleaseFound).
	Versions int `json:"versions"`
	// RecordRefusals counts the records the outsider engine refused; the
	// private record is refused for want of the secret.
	RecordRefusals int `json:"record_refusals"`
	// EnginePeers is the most peers the outsider engine held at once.
	EnginePeers int `json:"engine_peers"`
	// EngineBytes is the chunk bytes the outsider engine received.
	EngineBytes int64 `json:"engine_bytes"`
	// ClientPeersFound counts the peers the outsider client found in the
	// DHT under the release's public swarm ID.
	ClientPeersFound int `json:"client_peers_found"`
	// ClientDials counts insiders the client dialled (connections made);
	// ClientAnswers the manifests and chunks they gave it; ClientNotified
	// the messages (Hello, Have, records...) it received from them.
	ClientDials    int   `json:"client_dials"`
	ClientAnswers  int64 `json:"client_answers"`
	ClientNotified int64 `json:"client_notified"`
	// ClientDropped counts the client's connections the insiders closed.
	ClientDropped int `json:"client_dropped"`
}

// outsiders are a private scenario's outsider engine and client.
type outsiders struct {
	secret string // the insiders' secret, z-base-32

	eng   *engine.Engine
	conns []net.PacketConn
	host  host
	done  chan struct{} // the engine's events are read to the end

	mu  sync.Mutex
	rep OutsiderReport

	client      *network.Node
	clientConns []net.PacketConn
	clientKey   []byte
}

// setupPrivate makes the shared secret of a private scenario.
func (r *run) setupPrivate() error {
	if !r.s.Private {
		return nil
	}
	sec, err := release.GenerateSecret(rand.NewChaCha8(seedBytes(r.s.Seed, "secret")))
	if err != nil {
		return fmt.Errorf("simulation: %w", err)
	}
	r.out = &outsiders{secret: sec.String()}
	return nil
}

// sharedSecret is what the publisher and honest nodes are configured with.
func (r *run) sharedSecret() string {
	if r.out == nil {
		return ""
	}
	return r.out.secret
}

// startOutsiders starts the outsider engine and the client's DHT node.
func (r *run) startOutsiders(ctx context.Context, dir string) error {
	o := r.out
	if o == nil {
		return nil
	}
	h, err := r.net.addHost(netsim.Link{Up: r.s.Up, Down: r.s.Down, Latency: r.s.Latency, Loss: r.s.Loss})
	if err != nil {
		return fmt.Errorf("simulation: outsider host: %w", err)
	}
	o.host = h
	if o.conns, err = r.listen(h); err != nil {
		return err
	}
	nd := filepath.Join(dir, "outsider")
	hk := hooks.Hooks{Group: r.group, QueryResendDelay: r.s.QueryResendDelay, ChunkTimeout: r.s.ChunkTimeout,
		FindInterval: r.s.FindInterval, DHTConn: o.conns[0], QUICConn: o.conns[1]}
	e, err := engine.Start(hooks.With(ctx, &hk), engine.Config{
		PublisherKey: r.pub.String(), App: app, CurrentVersion: oldVersion,
		Target: filepath.Join(nd, app), StateDir: filepath.Join(nd, "state"), Apply: engine.ApplyOnRestart,
		Bootstrap: r.someNodes(8), Logger: r.log.With("node", "outsider"), PollInterval: r.s.PollInterval,
		Exec: func(string, []string, []string) error { return nil },
	})
	if err != nil {
		return fmt.Errorf("simulation: outsider engine: %w", err)
	}
	o.eng, o.done = e, make(chan struct{})
	go func() {
		defer close(o.done)
		for ev := range e.Events() {
			o.mu.Lock()
			switch ev := ev.(type) {
			case engine.ReleaseFound:
				o.rep.Versions++
			case engine.Refused:
				if ev.What == engine.RefusedRecord {
					o.rep.RecordRefusals++
				}
			case engine.Progress:
				o.rep.EnginePeers = max(o.rep.EnginePeers, ev.Peers)
				o.rep.EngineBytes = max(o.rep.EngineBytes, ev.Fetched)
			}
			o.mu.Unlock()
		}
	}()

	ch, err := r.net.addHost(netsim.Link{Up: r.s.Up, Down: r.s.Down, Latency: r.s.Latency, Loss: r.s.Loss})
	if err != nil {
		return fmt.Errorf("simulation: outsider client host: %w", err)
	}
	if o.clientConns, err = r.listen(ch); err != nil {
		return err
	}
	o.client, err = network.New(ctx, network.Config{
		DHTConn: o.clientConns[0], QUICConn: o.clientConns[1], Bootstrap: r.someNodes(8),
		QueryResendDelay: r.s.QueryResendDelay, Logger: r.log.With("node", "outsider-client"),
	})
	if err != nil {
		return fmt.Errorf("simulation: outsider client: %w", err)
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	o.client.Bootstrap(bctx)
	return nil
}

// probeOutsider runs the outsider client's attack on the published release
// and records what it got.
func (r *run) probeOutsider(ctx context.Context, sm *release.SignedManifest) {
	o := r.out
	if o == nil {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	found := 0
	if ch, err := o.client.FindPeers(fctx, release.SwarmIDOf(sm.ID)); err == nil {
		for range ch {
			found++
		}
	}
	cancel()
	key, _ := release.GenerateSecretKey(rand.NewChaCha8(seedBytes(r.s.Seed, "outsider client")))
	wrong, _ := release.GenerateSecret(rand.NewChaCha8(seedBytes(r.s.Seed, "wrong secret")))
	wrongSwarm, _ := release.NewPrivate(wrong)
	var dials, dropped atomic.Int64
	var answers, notified atomic.Int64
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		n.mu.Lock()
		nn := n.net
		n.mu.Unlock()
		if nn == nil {
			continue
		}
		ua := net.UDPAddrFromAddrPort(nn.QUICAddr())
		for _, prove := range []bool{false, true} {
			wg.Go(func() {
				dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				c, err := wire.Dial(dctx, o.client.Transport(), ua, key, wire.NodeID{}, wire.Limits{})
				if err != nil {
					return
				}
				dials.Add(1)
				defer c.Close(wire.CodeNone, "")
				if prove && c.Prove(dctx, wrongSwarm.ProofKey()) != nil {
					dropped.Add(1)
					return
				}
				h := &outsiderHandler{notified: &notified}
				go c.Serve(dctx, h)
				c.Send(dctx, &wire.Hello{Releases: []wire.HaveSet{{ID: sm.ID}}})
				if _, err := c.GetManifest(dctx, sm.ID); err == nil {
					answers.Add(1)
				}
				if _, err := c.FetchChunk(dctx, sm.ID, 0, sm.Manifest.ChunkLen(0)); err == nil {
					answers.Add(1)
				}
				select {
				case <-c.Done():
					dropped.Add(1)
				case <-dctx.Done():
				}
			})
		}
	}
	wg.Wait()
	o.mu.Lock()
	o.rep.ClientPeersFound = found
	o.rep.ClientDials = int(dials.Load())
	o.rep.ClientAnswers = answers.Load()
	o.rep.ClientNotified = notified.Load()
	o.rep.ClientDropped = int(dropped.Load())
	o.mu.Unlock()
}

// outsiderHandler serves nothing and counts what insiders tell it.
type outsiderHandler struct{ notified *atomic.Int64 }

func (h *outsiderHandler) Manifest(release.ManifestID) ([]byte, error) { return nil, wire.ErrNotFound }
func (h *outsiderHandler) Chunk(release.ManifestID, uint32, []byte) ([]byte, error) {
	return nil, wire.ErrNotFound
}
func (h *outsiderHandler) Notify(wire.NodeID, wire.Message) { h.notified.Add(1) }

// stopOutsiders stops the outsider engine and client and fills the report.
func (r *run) stopOutsiders(rep *Report) {
	o := r.out
	if o == nil {
		return
	}
	if o.eng != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		o.eng.Stop(ctx)
		cancel()
		<-o.done
		st := o.eng.Status()
		o.mu.Lock()
		o.rep.EnginePeers = max(o.rep.EnginePeers, st.Peers)
		o.rep.EngineBytes = max(o.rep.EngineBytes, st.Fetched)
		o.mu.Unlock()
		o.eng = nil
	}
	closeAll(o.conns)
	if o.client != nil {
		o.client.Close()
		o.client = nil
	}
	closeAll(o.clientConns)
	o.mu.Lock()
	out := o.rep
	o.mu.Unlock()
	rep.Outsider = &out
}
