package simulation

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation/netsim"
)

const (
	app        = "app"
	oldVersion = "1.0.0"
	newVersion = "1.1.0"
	// startParallel bounds the engines being started at once.
	startParallel = 16
)

// run is the state of one Run.
type run struct {
	s     Scenario
	plan  plan
	log   *slog.Logger
	net   hostNet
	group *hooks.Group // one actor system for every engine
	boots []*network.Node
	bootC []net.PacketConn
	addrs []string // bootstrap DHT addresses
	pub   release.PublicKey
	key   ed25519.PrivateKey

	artifact string
	data     []byte
	manifest release.ManifestID

	nodes   []*simNode
	hostile []*hostile
	attacks attackCounts // what the abusive hostile peers did (abuse.go)
	out     *outsiders   // a private scenario's outsiders; nil otherwise
	paths   pathTally    // chunk bytes per connection path (nat.go)
	dht     *dhtPop      // plain and junk DHT nodes (dhtnet.go); nil without
	bad     atomic.Int64 // packets to or from outside 127.0.0.0/8
	pubSent atomic.Int64 // the publisher's chunk bytes uploaded, for progress

	t0      time.Time     // the moment of publishing; zero before
	t0Mu    sync.RWMutex  // guards t0 and manifest
	changed chan struct{} // a node became aware or verified (buffered 1)
	ctx     context.Context
	wg      sync.WaitGroup // event readers and churn restarts
}

// simNode is one honest node across its incarnations.
type simNode struct {
	i      int
	host   host
	cfg    engine.Config
	hooks  hooks.Hooks // without conns
	target string
	churn  churnPlan

	mu        sync.Mutex
	eng       *engine.Engine
	net       *network.Node // eng's network node
	conns     []net.PacketConn
	closing   bool
	killed    bool  // churn has stopped it once
	fetched   int64 // chunk bytes received by this incarnation
	restarted bool
	restartAt time.Duration // since t0, of the last restart
	aware     time.Duration // since t0; valid when isAware
	verified  time.Duration
	isAware   bool
	isVerif   bool
	badEvent  bool          // Installed or Verified for another release
	last      engine.Status // at the last stop
	// Counters of stopped incarnations.
	uploaded, wasted, refused, received, reused int64
}

// Run plays a scenario and reports what it measured. It fails only when
// the simulation could not be set up; nodes that did not finish in time are
// counted in Report.Failed.
func Run(ctx context.Context, s Scenario) (Report, error) {
	start := time.Now()
	cpu0 := cpuTime()
	s, err := s.populate()
	if err != nil {
		return Report{}, err
	}
	r := &run{s: s, plan: s.plan(), log: s.Logger, changed: make(chan struct{}, 1), ctx: ctx}
	dir := s.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rpe-sim-*"); err != nil {
			return Report{}, fmt.Errorf("simulation: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	if err := r.makeArtifact(dir); err != nil {
		return Report{}, err
	}
	if err := r.setupPrivate(); err != nil {
		return Report{}, err
	}
	if s.Net == Loopback {
		r.net = &loopbackNet{}
	} else {
		ns, err := netsim.New(netsim.Config{Seed: s.Seed, Logger: s.Logger})
		if err != nil {
			return Report{}, fmt.Errorf("simulation: %w", err)
		}
		r.net = netsimNet{ns}
		if s.LatencyMax > s.Latency {
			r.net = newLatencyNet(r.net, s)
		}
	}
	logger := s.Logger
	r.group = &hooks.Group{Logger: logger}
	defer r.teardown()

	report := r.report()
	r.progress("starting", 0)
	if err := r.startBootstraps(ctx); err != nil {
		return Report{}, err
	}
	if s.Upgrade {
		if err := r.putOldRecord(ctx); err != nil {
			return Report{}, err
		}
	}
	if err := r.startDHT(ctx); err != nil {
		return Report{}, err
	}
	if err := r.addHosts(dir); err != nil {
		return Report{}, err
	}
	if err := r.startNodes(ctx); err != nil {
		return Report{}, err
	}
	if err := r.startHostile(ctx); err != nil {
		return Report{}, err
	}
	if err := r.startOutsiders(ctx, dir); err != nil {
		return Report{}, err
	}
	r.settle(ctx)
	report.StartupS = seconds(time.Since(start))
	var dhtRep DHTReport
	r.dht.churn(ctx)
	idleCPU, idleT := cpuTime(), time.Now()
	r.idle(ctx, &dhtRep)
	if s.Idle > 0 && idleCPU >= 0 {
		report.IdleCPUMsPerNodeS = ptr(seconds(cpuTime()-idleCPU) * 1000 / float64(s.Nodes) / seconds(time.Since(idleT)))
	}

	r.progress("publishing", 0)
	pubHost, err := r.net.addHostNAT(netsim.Link{Up: s.PublisherUp, Latency: s.Latency, Loss: s.Loss}, s.PublisherNAT)
	if err != nil {
		return Report{}, fmt.Errorf("simulation: publisher host: %w", err)
	}
	pubConns, err := r.listen(pubHost)
	if err != nil {
		return Report{}, err
	}
	defer closeAll(pubConns)
	queries0 := r.queriesPerNode()
	r.t0Mu.Lock()
	r.t0 = time.Now()
	r.t0Mu.Unlock()
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	pctx = hooks.With(pctx, &hooks.Hooks{
		DHTConn: pubConns[0], QUICConn: pubConns[1], Group: r.group, QueryResendDelay: s.QueryResendDelay,
		DHTReadOnly: s.PublisherNAT != netsim.NATNone,
	})
	p, err := engine.Publish(pctx, engine.PublishConfig{
		Key: r.key, Artifact: r.artifact, Version: newVersion, App: app, ChunkSize: s.ChunkSize,
		StateDir: filepath.Join(dir, "publisher"), Bootstrap: r.someNodes(8), LookupTimeout: time.Minute,
		Logger: logger.With("node", "publisher"), UploadRate: r.engineRate(s.PublisherUp),
		SharedSecret: r.sharedSecret(),
	})
	pcancel()
	if err != nil {
		return Report{}, fmt.Errorf("simulation: %w", err)
	}
	report.PublishS = seconds(time.Since(r.t0))
	r.t0Mu.Lock()
	r.manifest = p.Manifest.ID
	r.t0Mu.Unlock()
	report.ChunkSize = p.Manifest.Manifest.ChunkSize
	if err := r.serveHostile(p); err != nil {
		p.Stop(context.Background())
		return Report{}, err
	}
	pubDone := r.drainPublisher(p.Events(), pubHost) // nat.go: counts its chunk bytes per path
	if r.out != nil {
		r.wg.Go(func() { r.probeOutsider(ctx, p.Manifest) })
	}

	// Watch until every node has verified and installed, or the timeout.
	deadline := time.NewTimer(s.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastProgress time.Time
	publisherUp := true
	var pubUploaded int64
	var leftAt *float64
	stopPublisher := func() {
		if publisherUp {
			publisherUp = false
			p.Stop(context.Background())
			<-pubDone
			pubUploaded = p.Status().Uploaded
		}
	}
	defer stopPublisher()
watch:
	for {
		select {
		case <-ctx.Done():
			break watch
		case <-deadline.C:
			r.log.Warn("simulation: timeout", "after", s.Timeout)
			break watch
		case <-r.changed:
		case <-tick.C:
		}
		elapsed := r.since()
		if publisherUp {
			r.pubSent.Store(p.Status().Uploaded)
		}
		// Uploaded counts chunk answers written in full (swarm.Served); the
		// stop cuts off the answers still going out.
		if publisherUp && s.PublisherLeavesAfter > 0 && p.Status().Uploaded >= int64(s.PublisherLeavesAfter)*s.Size {
			stopPublisher()
			leftAt = ptr(seconds(elapsed))
			r.log.Info("simulation: publisher left", "after", elapsed, "uploaded", pubUploaded)
		}
		_, verified := r.counts()
		if time.Since(lastProgress) >= 500*time.Millisecond {
			lastProgress = time.Now()
			r.progress("running", elapsed)
		}
		if verified == s.Nodes && r.allInstalled() {
			break
		}
	}
	elapsed := r.since()
	report.Attack = r.attackReport() // before the nodes stop: it reads their peer stores
	r.progress("stopping", elapsed)
	if publisherUp {
		pubUploaded = p.Status().Uploaded
	}
	stopPublisher()
	report.PublisherUploadBytes = pubUploaded
	r.pubSent.Store(pubUploaded)
	report.PublisherLeftS = leftAt
	report.DHTQueriesPerNode, report.DHTQueriesByKind, _ = queryDelta(queries0, r.queriesPerNode())
	r.probeDHT(ctx, &dhtRep)
	if s.wantDHT() {
		r.dht.report(&dhtRep)
		report.DHT = &dhtRep
	}
	r.stopNodes()
	r.stopOutsiders(report)
	r.finish(report, pubUploaded)
	report.WallS = seconds(time.Since(start))
	if cpu0 >= 0 {
		report.CPUS = ptr(seconds(cpuTime() - cpu0))
	}
	report.PeakRSSBytes = PeakRSS()
	r.progress("done", elapsed)
	return *report, nil
}

// report starts the report with what the scenario fixes.
func (r *run) report() *Report {
	rep := &Report{Nodes: r.s.Nodes, SizeBytes: r.s.Size, Seed: r.s.Seed, Clock: r.s.clock(), Net: r.s.Net, Hostile: len(r.plan.hostile)}
	if t, ok := Bound(r.s.Size, r.s.PublisherUp, r.plan.up, r.plan.down); ok {
		rep.TMinS = ptr(t)
	}
	return rep
}

// makeArtifact writes the file to publish, drawn from the seed, and makes
// the publisher key.
func (r *run) makeArtifact(dir string) error {
	rnd := rand.NewChaCha8(seedBytes(r.s.Seed, "artifact"))
	r.data = make([]byte, r.s.Size)
	rnd.Read(r.data)
	r.artifact = filepath.Join(dir, "artifact")
	if err := os.WriteFile(r.artifact, r.data, 0o755); err != nil {
		return fmt.Errorf("simulation: %w", err)
	}
	key, err := release.GenerateSecretKey(rand.NewChaCha8(seedBytes(r.s.Seed, "publisher")))
	if err != nil {
		return fmt.Errorf("simulation: %w", err)
	}
	r.key, r.pub = key, release.PublicKeyOf(key)
	return nil
}

func seedBytes(seed int64, label string) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "rpe simulation %d %s", seed, label))
}

// listen opens a host's DHT and QUIC conns, wrapped to check addresses.
// On loopback quic-go gets the UDP socket itself, so it measures the
// engine on its real send and receive path (batches, GSO); the kernel
// refuses to send from 127.0.0.1 to any address outside 127.0.0.0/8, and
// every address a node learns comes through the checked DHT conn.
func (r *run) listen(h host) ([]net.PacketConn, error) {
	d, q, err := h.listen()
	if err != nil {
		return nil, fmt.Errorf("simulation: %s: %w", h, err)
	}
	if r.s.Net == Loopback {
		return []net.PacketConn{checked(d, &r.bad), q}, nil
	}
	return []net.PacketConn{checked(d, &r.bad), checked(q, &r.bad)}, nil
}

// engineRate is the rate limit an engine enforces itself: on loopback the
// link's, as nothing else shapes the traffic; on netsim none, as the link
// does.
func (r *run) engineRate(link int64) int64 {
	if r.s.Net == Loopback {
		return link
	}
	return 0
}

func addrPortOfConn(c net.PacketConn) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(c.LocalAddr().String())
	return ap
}

func closeAll(cs []net.PacketConn) {
	for _, c := range cs {
		c.Close()
	}
}

// startBootstraps starts the plain DHT nodes every node starts from.
func (r *run) startBootstraps(ctx context.Context) error {
	for i := range r.s.Bootstraps {
		h, err := r.net.addHost(netsim.Link{Latency: r.s.Latency})
		if err != nil {
			return fmt.Errorf("simulation: bootstrap host: %w", err)
		}
		cs, err := r.listen(h)
		if err != nil {
			return err
		}
		r.bootC = append(r.bootC, cs...)
		n, err := network.New(ctx, network.Config{
			DHTConn: cs[0], QUICConn: cs[1], NoBootstrap: i == 0, Bootstrap: r.addrs,
			QueryResendDelay: r.s.QueryResendDelay, Logger: r.log.With("node", fmt.Sprintf("boot%d", i)),
			// Every node bootstraps from these: answer them all.
			SendRate: 5000, SendBurst: 1000,
		})
		if err != nil {
			return fmt.Errorf("simulation: bootstrap node: %w", err)
		}
		r.boots = append(r.boots, n)
		if i > 0 {
			bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := n.Bootstrap(bctx)
			cancel()
			if err != nil {
				return fmt.Errorf("simulation: bootstrap node %d: %w", i, err)
			}
		}
		r.addrs = append(r.addrs, n.DHTAddr().String())
	}
	return nil
}

// someNodes returns the bootstrap nodes' DHT addresses and those of up to n
// honest nodes, spread over the network.
func (r *run) someNodes(n int) []string {
	addrs := slices.Clone(r.addrs)
	for k := range min(n, len(r.nodes)) {
		addrs = append(addrs, r.nodes[k*len(r.nodes)/min(n, len(r.nodes))].host.dhtAddr())
	}
	return addrs
}

// addHosts adds the honest nodes' hosts, in order, so a seed always gives
// the same addresses.
func (r *run) addHosts(dir string) error {
	for i := range r.s.Nodes {
		h, err := r.net.addHostNAT(netsim.Link{Up: r.plan.up[i], Down: r.plan.down[i], Latency: r.s.Latency, Loss: r.s.Loss}, r.plan.nat[i])
		if err != nil {
			return fmt.Errorf("simulation: node host: %w", err)
		}
		nd := filepath.Join(dir, fmt.Sprintf("n%04d", i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return fmt.Errorf("simulation: %w", err)
		}
		target := filepath.Join(nd, app)
		if err := os.WriteFile(target, r.oldContent(i), 0o755); err != nil {
			return fmt.Errorf("simulation: %w", err)
		}
		n := &simNode{i: i, host: h, target: target, churn: r.plan.churn[i]}
		r.paths.host(h.publicIP(), r.plan.nat[i]) // nat.go
		// Start from the bootstrap nodes and up to three earlier nodes, as
		// in a network that grows.
		boot := slices.Clone(r.addrs)
		for _, j := range r.plan.boot[i] {
			boot = append(boot, r.nodes[j].host.dhtAddr())
		}
		n.cfg = engine.Config{
			NoPoll:       r.s.NoPoll,
			PublisherKey: r.pub.String(), App: app, CurrentVersion: oldVersion,
			Target: target, StateDir: filepath.Join(nd, "state"), Apply: engine.ApplyOnRestart,
			Bootstrap: boot, Logger: r.log.With("node", i), PollInterval: r.s.PollInterval,
			Exec:       func(string, []string, []string) error { return nil },
			UploadRate: r.engineRate(r.plan.up[i]), DownloadRate: r.engineRate(r.plan.down[i]),
			SharedSecret: r.sharedSecret(),
		}
		n.hooks = hooks.Hooks{
			Group: r.group, QueryResendDelay: r.s.QueryResendDelay, ChunkTimeout: r.s.ChunkTimeout, FindInterval: r.s.FindInterval,
			DHTReadOnly: r.plan.nat[i] != netsim.NATNone, // behind NAT: see nat.go
		}
		n.cfg.Relay = r.relays(i) // nat.go
		r.nodes = append(r.nodes, n)
	}
	return nil
}

// oldContent is node i's installed file: a short text of its own, or with
// Scenario.Installed the release with a byte changed in the other chunks.
func (r *run) oldContent(i int) []byte {
	if r.s.Installed == 0 {
		return fmt.Appendf(nil, "node %d runs version %s\n", i, oldVersion)
	}
	b := bytes.Clone(r.data)
	cs := int64(cmp.Or(r.s.ChunkSize, release.DefaultChunkSize))
	for off, k := int64(0), 0; off < int64(len(b)); off, k = off+cs, k+1 {
		h := sha256.Sum256(fmt.Appendf(nil, "rpe simulation %d installed %d %d", r.s.Seed, i, k))
		if float64(h[0])/256 >= r.s.Installed {
			b[off] ^= 0xff
		}
	}
	return b
}

// startNodes starts every engine, a few at a time.
func (r *run) startNodes(ctx context.Context) error {
	sem := make(chan struct{}, startParallel)
	errs := make(chan error, len(r.nodes))
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.startNode(ctx, n); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// startNode starts one incarnation of a node on fresh conns.
func (r *run) startNode(ctx context.Context, n *simNode) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		return nil
	}
	cs, err := r.listen(n.host)
	if err != nil {
		return err
	}
	h := n.hooks
	h.DHTConn, h.QUICConn = cs[0], cs[1]
	h.Node = func(nn *network.Node) { n.net = nn } // under n.mu, held here
	e, err := engine.Start(hooks.With(ctx, &h), n.cfg)
	if err != nil {
		closeAll(cs)
		return fmt.Errorf("simulation: node %d: %w", n.i, err)
	}
	n.eng, n.conns = e, cs
	r.wg.Go(func() { r.watch(n, e) })
	return nil
}

// watch reads one incarnation's events until it stops.
func (r *run) watch(n *simNode, e *engine.Engine) {
	for ev := range e.Events() {
		t, published := r.sinceOK()
		if _, ok := ev.(engine.Progress); !ok && r.log.Enabled(r.ctx, slog.LevelDebug) {
			r.log.Debug("simulation: event", "node", n.i, "t", t, "event", fmt.Sprintf("%T", ev))
		}
		switch ev := ev.(type) {
		case engine.ReleaseFound:
			n.mu.Lock()
			// By version: nodes may find the record before Publish
			// returns, when the manifest ID is not yet known here.
			if !n.isAware && published && ev.Version == newVersion {
				n.isAware, n.aware = true, t
				r.signal()
			}
			n.mu.Unlock()
		case engine.Progress:
			n.mu.Lock()
			n.fetched = ev.Fetched
			kill := n.churn.at > 0 && !n.killed && !n.closing && ev.Total > 0 &&
				float64(ev.Verified) >= n.churn.at*float64(ev.Total) && ev.Verified < ev.Total
			if kill {
				n.killed = true
			}
			n.mu.Unlock()
			if kill {
				r.wg.Go(func() { r.churnNode(n, e) })
			}
		case engine.Verified:
			n.mu.Lock()
			if ev.ManifestID != r.published() {
				n.badEvent = true
			} else if !n.isVerif {
				n.isVerif, n.verified = true, t
				if !n.isAware {
					n.isAware, n.aware = true, t
				}
				r.signal()
			}
			n.mu.Unlock()
		case engine.Installed:
			if ev.ManifestID != r.published() {
				n.mu.Lock()
				n.badEvent = true
				n.mu.Unlock()
			}
			r.signal()
		case engine.Served:
			r.paths.add(n.host.publicIP(), ev) // nat.go
		case engine.Refused:
			if ev.What == engine.RefusedChunk {
				n.mu.Lock()
				n.refused++
				n.mu.Unlock()
			}
		}
	}
}

// churnNode stops a node mid-download and starts it again later with the
// same state directory and fresh conns on the same host.
func (r *run) churnNode(n *simNode, e *engine.Engine) {
	r.log.Info("simulation: churn: stopping node", "node", n.i)
	r.stopIncarnation(n, e)
	t := time.NewTimer(n.churn.down)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.ctx.Done():
		return
	}
	n.mu.Lock()
	closing := n.closing
	n.restarted = !closing
	n.mu.Unlock()
	if closing {
		return
	}
	r.log.Info("simulation: churn: restarting node", "node", n.i)
	n.mu.Lock()
	n.restartAt = r.since()
	n.mu.Unlock()
	if err := r.startNode(r.ctx, n); err != nil {
		r.log.Error("simulation: churn: restart", "node", n.i, "err", err)
	}
}

// stopIncarnation stops a node's engine, keeps its counters and closes its
// conns.
func (r *run) stopIncarnation(n *simNode, e *engine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		r.log.Warn("simulation: stop node", "node", n.i, "err", err)
	}
	st := e.Status()
	n.mu.Lock()
	n.uploaded += st.Uploaded
	n.wasted += st.Wasted
	n.reused += st.Reused
	n.received += st.Fetched
	n.fetched = 0
	n.last = st
	cs := n.conns
	if n.eng == e {
		n.eng, n.conns = nil, nil
	}
	n.mu.Unlock()
	closeAll(cs)
}

// settle fills the routing tables and waits until they have filled, or a
// deadline. Nodes that bootstrapped at the same time hardly know each
// other (a node that only queried another is not handed out until it has
// answered a query itself), so once every node is up the bootstrap nodes
// ping their tables and every node bootstraps again, in waves.
func (r *run) settle(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range r.boots {
		wg.Go(func() { b.Bootstrap(bctx) })
	}
	wg.Wait()
	const wave = 32
	for lo := 0; lo < len(r.nodes); lo += wave {
		for _, n := range r.nodes[lo:min(lo+wave, len(r.nodes))] {
			n.mu.Lock()
			e, nn := n.eng, n.net
			n.mu.Unlock()
			if e != nil {
				wg.Go(func() {
					select {
					case <-e.Bootstrapped():
					case <-bctx.Done():
						return
					}
					nn.Bootstrap(bctx)
				})
			}
		}
		wg.Wait()
		r.progressStarted(min(lo+wave, len(r.nodes)))
	}
	r.waitTables(ctx)
}

// waitTables waits until every node's routing table has a few entries.
func (r *run) waitTables(ctx context.Context) {
	want := min(8, r.s.Nodes+r.s.Bootstraps-1)
	deadline := time.Now().Add(20*time.Second + time.Duration(r.s.Nodes)*20*time.Millisecond)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := 0
		var sizes []int
		for _, n := range r.nodes {
			n.mu.Lock()
			if n.eng != nil {
				sizes = append(sizes, n.net.TableSize())
				if n.net.TableSize() >= want {
					ready++
				}
			}
			n.mu.Unlock()
		}
		r.progressStarted(ready)
		if ready == len(r.nodes) {
			return
		}
		if time.Now().After(deadline) {
			r.log.Warn("simulation: DHT did not settle", "ready", ready, "nodes", len(r.nodes), "tables", fmt.Sprint(sizes))
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// startHostile starts the hostile peers' DHT nodes; they serve once the
// release is published.
func (r *run) startHostile(ctx context.Context) error {
	for i, kind := range r.plan.hostile {
		h, err := r.net.addHost(netsim.Link{Up: r.s.Up, Down: r.s.Down, Latency: r.s.Latency, Loss: r.s.Loss})
		if err != nil {
			return fmt.Errorf("simulation: hostile host: %w", err)
		}
		cs, err := r.listen(h)
		if err != nil {
			return err
		}
		key, err := release.GenerateSecretKey(rand.NewChaCha8(seedBytes(r.s.Seed, fmt.Sprint("hostile ", i))))
		if err != nil {
			closeAll(cs)
			return err
		}
		hc, cancel := context.WithCancel(context.Background())
		hp := &hostile{kind: kind, key: key, conns: cs, ctx: hc, cancel: cancel,
			attack: r.s.Attack, attacks: &r.attacks, addr: addrPortOfConn(cs[0]).Addr(),
			rng: rand.NewChaCha8(seedBytes(r.s.Seed, fmt.Sprint("hostile identities ", i)))}
		if kind == FakeAnnouncer {
			// A DHT client that announces any port it likes; it needs no
			// routing table (see abuse.go).
			if hp.dht, err = newFakeAnnouncerDHT(cs[0], r.s.QueryResendDelay); err != nil {
				cancel()
				closeAll(cs)
				return fmt.Errorf("simulation: hostile DHT: %w", err)
			}
			r.hostile = append(r.hostile, hp)
			continue
		}
		n, err := network.New(ctx, network.Config{
			DHTConn: cs[0], QUICConn: cs[1], Bootstrap: r.someNodes(5),
			QueryResendDelay: r.s.QueryResendDelay, Logger: r.log.With("hostile", i),
		})
		if err != nil {
			cancel()
			closeAll(cs)
			return fmt.Errorf("simulation: hostile node: %w", err)
		}
		hp.node = n
		r.hostile = append(r.hostile, hp)
		hp.wg.Go(func() {
			bctx, cancel := context.WithTimeout(hc, 30*time.Second)
			defer cancel()
			n.Bootstrap(bctx)
		})
	}
	return nil
}

// serveHostile lets the hostile peers loose on the published release.
func (r *run) serveHostile(p *engine.Publisher) error {
	if len(r.hostile) == 0 {
		return nil
	}
	man := p.Manifest.Manifest
	// An old record, genuinely signed, naming the version every node runs.
	v, _ := release.ParseVersion(oldVersion)
	stale, err := release.NewSignedPacket(r.key, []release.Entry{{
		App: man.App, Channel: man.Channel, Platform: man.Platform, Version: v,
		ManifestID: release.ManifestID(sha256.Sum256([]byte("old release"))), Size: man.Size,
	}}, p.Packet.Seq-3_600_000_000)
	if err != nil {
		return fmt.Errorf("simulation: stale record: %w", err)
	}
	rel := &hostileRelease{sm: p.Manifest, data: r.data, stale: stale}
	// The DHT nodes a fake announcer floods: those closest to the swarm ID.
	var ids [][20]byte
	var addrs []netip.AddrPort
	for _, b := range r.boots {
		ids, addrs = append(ids, b.ID()), append(addrs, b.DHTAddr())
	}
	for _, n := range r.nodes {
		n.mu.Lock()
		if nn := n.net; nn != nil {
			ids, addrs = append(ids, nn.ID()), append(addrs, nn.DHTAddr())
		}
		n.mu.Unlock()
	}
	near := closestDHT(release.SwarmIDOf(p.Manifest.ID), ids, addrs, fakeTargets)
	for _, h := range r.hostile {
		h.dhtTargets = near
		if err := h.serve(rel); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) sinceOK() (time.Duration, bool) {
	r.t0Mu.RLock()
	t0 := r.t0
	r.t0Mu.RUnlock()
	if t0.IsZero() {
		return 0, false
	}
	return time.Since(t0), true
}

// published returns the published release's manifest ID, once Publish
// has returned.
func (r *run) published() release.ManifestID {
	r.t0Mu.RLock()
	defer r.t0Mu.RUnlock()
	return r.manifest
}

func (r *run) since() time.Duration { d, _ := r.sinceOK(); return d }

func (r *run) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *run) counts() (aware, verified int) {
	aware, verified, _ = r.countsMoved()
	return aware, verified
}

// countsMoved also returns the chunk bytes every node received so far.
func (r *run) countsMoved() (aware, verified int, moved int64) {
	for _, n := range r.nodes {
		n.mu.Lock()
		if n.isAware {
			aware++
		}
		if n.isVerif {
			verified++
		}
		moved += n.received + n.fetched
		n.mu.Unlock()
	}
	return aware, verified, moved
}

// allInstalled reports whether every node's target holds the published
// bytes (checked by status, then by the file only when the status says so).
func (r *run) allInstalled() bool {
	for _, n := range r.nodes {
		n.mu.Lock()
		e := n.eng
		n.mu.Unlock()
		if e == nil || e.Status().Phase != engine.PhaseInstalled {
			return false
		}
	}
	return true
}

func (r *run) progressStarted(ready int) {
	if r.s.OnProgress != nil {
		r.s.OnProgress(Progress{Phase: "starting", Started: ready, Total: r.s.Nodes})
	}
}

func (r *run) progress(phase string, elapsed time.Duration) {
	if r.s.OnProgress == nil {
		return
	}
	aware, verified, moved := r.countsMoved()
	started := 0
	for _, n := range r.nodes {
		n.mu.Lock()
		if n.eng != nil {
			started++
		}
		n.mu.Unlock()
	}
	r.s.OnProgress(Progress{Elapsed: elapsed, Phase: phase, Started: started, Aware: aware, Verified: verified, Total: r.s.Nodes,
		Moved: moved, PublisherSent: r.pubSent.Load(), Size: r.s.Size})
}

// stopNodes stops every engine, a few at a time.
func (r *run) stopNodes() {
	sem := make(chan struct{}, startParallel)
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		n.mu.Lock()
		n.closing = true
		e := n.eng
		n.mu.Unlock()
		if e == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r.stopIncarnation(n, e)
		})
	}
	wg.Wait()
	r.wg.Wait()
}

// finish fills the report from the stopped nodes and their files.
func (r *run) finish(rep *Report, pubUploaded int64) {
	var verified, aware []float64
	failed := 0
	rep.TotalUploadBytes = pubUploaded
	for _, n := range r.nodes {
		good, bad := r.checkTarget(n)
		n.mu.Lock()
		if n.isVerif && good {
			rep.Completed++
			verified = append(verified, seconds(n.verified))
		} else if failed++; failed <= 10 {
			st := n.last
			r.log.Warn("simulation: node did not complete", "node", n.i, "phase", st.Phase,
				"verified", st.Verified, "total", st.Total, "peers", st.Peers, "fetched", st.Fetched, "wasted", st.Wasted)
		}
		if n.isAware {
			aware = append(aware, seconds(n.aware))
		}
		if bad || n.badEvent {
			rep.BadInstalls++
		}
		if n.killed {
			rep.Churned++
		}
		if n.restarted {
			rep.Restarts++
			if n.isVerif && n.verified >= n.restartAt {
				d := seconds(n.verified - n.restartAt)
				if rep.RestartToVerifiedMaxS == nil || d > *rep.RestartToVerifiedMaxS {
					rep.RestartToVerifiedMaxS = ptr(d)
				}
			}
		}
		rep.TotalUploadBytes += n.uploaded
		rep.WastedBytes += n.wasted
		rep.ReusedBytes += n.reused
		rep.RefusedChunks += n.refused
		n.mu.Unlock()
	}
	for _, h := range r.hostile {
		rep.CorruptServed += h.corrupt.Load()
	}
	rep.Failed = rep.Nodes - rep.Completed
	rep.NAT = r.natReport()
	rep.SetTimes(verified, aware)
	rep.NetBytesSent = max(0, r.net.bytesSent())
	rep.AddrViolations = r.bad.Load()
}

// checkTarget compares a node's target with the published bytes: good when
// it holds them, bad when it holds anything but them or its old content.
// It compares bytes (memcmp) rather than hashes: with hundreds of nodes a
// SHA-256 of every target cost the harness seconds of CPU.
func (r *run) checkTarget(n *simNode) (good, bad bool) {
	f, err := os.Open(n.target)
	if err != nil {
		return false, true // the old file is gone and nothing replaced it
	}
	defer f.Close()
	// Read at most one byte more than either candidate, so a huge file
	// cannot make the check slow.
	old := r.oldContent(n.i)
	b := make([]byte, max(int64(len(old)), r.s.Size)+1)
	k, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return false, true
	}
	b = b[:k]
	if bytes.Equal(b, r.data) {
		return true, false
	}
	return false, !bytes.Equal(b, old)
}

// teardown stops what is left, in reverse order of starting.
func (r *run) teardown() {
	r.stopOutsiders(&Report{}) // when Run failed before stopping them
	for _, n := range r.nodes {
		n.mu.Lock()
		n.closing = true
		e := n.eng
		n.mu.Unlock()
		if e != nil {
			r.stopIncarnation(n, e)
		}
	}
	r.wg.Wait()
	for _, h := range r.hostile {
		h.stop()
	}
	r.dht.close()
	for _, b := range r.boots {
		b.Close()
	}
	closeAll(r.bootC)
	r.group.Close()
	if err := r.net.close(); err != nil && !errors.Is(err, net.ErrClosed) {
		r.log.Warn("simulation: close network", "err", err)
	}
}

// drain reads a channel of events until it closes.
func drain(ch <-chan engine.Event) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	return done
}
