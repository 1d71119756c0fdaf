package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation"
)

func init() {
	register(&command{
		name: "demo",
		args: "[--nodes N] [--size SIZE] [--up RATE] [--publisher-up RATE] [--json] [--quiet] [-v]",
		summary: "Show rpe at work: a publisher and 50 nodes on loopback in this process; " +
			"one release reaches them all.",
		run: runDemo,
	})
}

// The demo's release.
const (
	demoApp        = "demo"
	demoOldVersion = "1.0.0"
	demoNewVersion = "1.1.0"
)

// queryResendDelay is how long a DHT query waits for its answer before it
// is sent again (loopback answers in well under a millisecond; measured
// with 50 nodes on two busy cores, 200ms did better than 1s).
const queryResendDelay = 200 * time.Millisecond

// demoNode is one node of the demo and what it saw.
type demoNode struct {
	i      int
	target string
	eng    *engine.Engine
	net    *network.Node // eng's network node

	mu       sync.Mutex
	fetched  int64
	aware    time.Duration
	verified time.Duration
	isAware  bool
	isVerif  bool
	good     bool // installed the published bytes
	bad      bool // installed anything else
	wasted   int64
	refused  int64
	uploaded int64
}

// demo is one run of `rpe demo`.
type demo struct {
	nodes    []*demoNode
	data     []byte
	manifest release.ManifestID
	changed  chan struct{}

	t0Mu sync.Mutex
	t0   time.Time
}

func (d *demo) since() time.Duration {
	d.t0Mu.Lock()
	defer d.t0Mu.Unlock()
	if d.t0.IsZero() {
		return 0
	}
	return time.Since(d.t0)
}

func (d *demo) signal() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

func runDemo(ctx context.Context, e *env, args []string) error {
	c := commands["demo"]
	fs := newFlags(e, c)
	nodes := fs.Int("nodes", 50, "nodes that follow the publisher, each a complete engine")
	var size int64 = 4 << 20
	fs.Var(sizeFlag{&size}, "size", "size of the published file, e.g. 4MiB")
	var up, pubUp int64 = 2 << 20, 2 << 20
	fs.Var(rateFlag{&up}, "up", "each node's upload rate, e.g. 2MiB (= 2MiB/s); 0 for unlimited")
	fs.Var(rateFlag{&pubUp}, "publisher-up", "the publisher's upload rate; 0 for unlimited")
	var chunk int64 = 256 << 10
	fs.Var(sizeFlag{&chunk}, "chunk-size", "chunk size of the release, 16KiB to 16MiB")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up this long after publishing")
	of := addOutFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 500 {
		return usagef("--nodes %d: want 1 to 500", *nodes)
	}
	if size < 1 || size > 1<<30 {
		return usagef("--size %s: want 1 byte to 1GiB", units.FormatSize(size))
	}
	if chunk < release.MinChunkSize || chunk > release.MaxChunkSize {
		return usagef("--chunk-size %s: want 16KiB to 16MiB", units.FormatSize(chunk))
	}
	logger := of.logger(e)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	start := time.Now()

	dir, err := os.MkdirTemp("", "rpe-demo-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The release: random bytes, a fresh publisher key.
	d := &demo{data: make([]byte, size), changed: make(chan struct{}, 1)}
	mrand.NewChaCha8([32]byte{'r', 'p', 'e'}).Read(d.data)
	artifact := filepath.Join(dir, "demo-1.1.0")
	if err := os.WriteFile(artifact, d.data, 0o755); err != nil {
		return err
	}
	key, err := release.GenerateSecretKey(rand.Reader)
	if err != nil {
		return err
	}
	pub := release.PublicKeyOf(key)

	// One actor system for every node, as the simulation does.
	sys := &hooks.Group{Logger: logger}
	defer sys.Close()

	// A private DHT on loopback: one bootstrap node; never the public one.
	boot, err := network.New(ctx, network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true,
		QueryResendDelay: queryResendDelay, SendRate: 5000, SendBurst: 1000,
		Logger: logger.With("node", "bootstrap"),
	})
	if err != nil {
		return fmt.Errorf("start bootstrap node: %w", err)
	}
	defer boot.Close()
	bootAddrs := []string{boot.DHTAddr().String()}

	pw := e.stdout
	if *of.json {
		pw = e.stderr
	}
	prog := newDemoProgress(pw, *nodes, size, *of.quiet)
	prog.line("starting %d nodes on 127.0.0.1 (publisher key %s)", *nodes, pub)

	if err := d.startNodes(ctx, dir, *nodes, pub, bootAddrs, up, sys, logger); err != nil {
		d.stopNodes()
		return err
	}
	defer d.stopNodes()
	d.settle(ctx, boot)
	startup := time.Since(start)

	// Publish.
	prog.line("publishing %s %s (%s) to a DHT of %d nodes", demoApp, demoNewVersion, units.FormatSize(size), *nodes+1)
	d.t0Mu.Lock()
	d.t0 = time.Now()
	d.t0Mu.Unlock()
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	pctx = hooks.With(pctx, &hooks.Hooks{Group: sys, QueryResendDelay: queryResendDelay})
	p, err := engine.Publish(pctx, engine.PublishConfig{
		Key: key, Artifact: artifact, Version: demoNewVersion, App: demoApp, ChunkSize: int(chunk),
		StateDir: filepath.Join(dir, "publisher"), Bootstrap: d.someAddrs(bootAddrs, 8),
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", Logger: logger.With("node", "publisher"),
		UploadRate: pubUp,
	})
	pcancel()
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	publishTook := d.since()
	d.manifest = p.Manifest.ID
	var pubServed atomic.Int64
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for ev := range p.Events() {
			if s, ok := ev.(engine.Served); ok {
				pubServed.Add(int64(s.Bytes))
			}
		}
	}()
	stopPublisher := sync.OnceFunc(func() {
		p.Stop(context.Background())
		<-pubDone
	})
	defer stopPublisher()

	deadline := time.NewTimer(*timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var timedOut, interrupted bool
watch:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			break watch
		case <-deadline.C:
			timedOut = true
			break watch
		case <-d.changed:
		case <-tick.C:
		}
		verified, installed, moved := d.counts()
		prog.update(d.since(), verified, moved, pubServed.Load())
		if installed == *nodes {
			break
		}
	}
	verified, _, moved := d.counts()
	elapsed := d.since()
	prog.update(elapsed, verified, moved, pubServed.Load())
	prog.finish()
	pubUploaded := p.Status().Uploaded
	stopPublisher()
	for _, n := range d.nodes {
		n.mu.Lock()
		n.uploaded = n.eng.Status().Uploaded
		n.mu.Unlock()
	}
	d.stopNodes()

	ups := make([]int64, *nodes)
	for i := range ups {
		ups[i] = up
	}
	rep := d.report(size, pubUp, ups, pubUploaded, p.Manifest.Manifest.ChunkSize)
	rep.StartupS = startup.Seconds()
	rep.PublishS = publishTook.Seconds()
	rep.WallS = time.Since(start).Seconds()
	rep.PeakRSSBytes = simulation.PeakRSS()

	if *of.json {
		if err := rep.WriteJSON(e.stdout); err != nil {
			return err
		}
	} else {
		printDemoSummary(e.stdout, rep, elapsed)
	}
	switch {
	case interrupted:
		return errors.New("interrupted")
	case rep.BadInstalls > 0:
		return fmt.Errorf("%d nodes installed something other than the published bytes", rep.BadInstalls)
	case timedOut || rep.Completed < rep.Nodes:
		return fmt.Errorf("%d of %d nodes were not updated within %v; run with -v to see why", rep.Nodes-rep.Completed, rep.Nodes, *timeout)
	}
	return nil
}

// startNodes starts n engines at the old version, a few at a time; each
// bootstraps from the bootstrap node and up to three earlier nodes.
func (d *demo) startNodes(ctx context.Context, dir string, n int, pub release.PublicKey, boot []string, up int64, sys *hooks.Group, logger *slog.Logger) error {
	d.nodes = make([]*demoNode, n)
	var mu sync.Mutex
	var addrs []string
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		nd := filepath.Join(dir, fmt.Sprintf("node%02d", i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return err
		}
		target := filepath.Join(nd, demoApp)
		if err := os.WriteFile(target, fmt.Appendf(nil, "node %d runs %s\n", i, demoOldVersion), 0o755); err != nil {
			return err
		}
		nodeKey, err := release.GenerateSecretKey(rand.Reader)
		if err != nil {
			return err
		}
		node := &demoNode{i: i, target: target}
		d.nodes[i] = node
		sem <- struct{}{}
		mu.Lock()
		b := slices.Clone(boot)
		for k := len(addrs) - 1; k >= 0 && k >= len(addrs)-3; k-- {
			b = append(b, addrs[k])
		}
		mu.Unlock()
		cfg := engine.Config{
			PublisherKey: pub.String(), App: demoApp, CurrentVersion: demoOldVersion,
			Target: target, StateDir: filepath.Join(nd, "state"), Apply: engine.ApplyOnRestart,
			Exec:      func(string, []string, []string) error { return nil },
			Bootstrap: b, ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0",
			Logger: logger.With("node", i), NodeKey: nodeKey, UploadRate: up,
			PollInterval: 2 * time.Second,
		}
		h := &hooks.Hooks{Group: sys, FindInterval: time.Second, QueryResendDelay: queryResendDelay,
			Node: func(nn *network.Node) { node.net = nn }}
		wg.Go(func() {
			defer func() { <-sem }()
			eng, err := engine.Start(hooks.With(ctx, h), cfg)
			if err != nil {
				errs <- fmt.Errorf("start node %d: %w", i, err)
				return
			}
			node.mu.Lock()
			node.eng = eng
			node.mu.Unlock()
			mu.Lock()
			addrs = append(addrs, eng.Status().DHTAddr)
			mu.Unlock()
			go d.watch(node, eng)
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// someAddrs returns boot and the DHT addresses of up to n nodes.
func (d *demo) someAddrs(boot []string, n int) []string {
	out := slices.Clone(boot)
	for _, i := range mrand.Perm(len(d.nodes))[:min(n, len(d.nodes))] {
		out = append(out, d.nodes[i].eng.Status().DHTAddr)
	}
	return out
}

// settle fills the DHT routing tables before publishing, so the record
// reaches every node at once. Nodes that bootstrapped at the same time hardly
// know each other (a node that only queried another is not handed out until
// it has answered a query itself), so once every first bootstrap has ended
// every node bootstraps again; then it waits until every table holds a full
// bucket. The bootstrap node bootstraps too, in between: it never does by
// itself (NoBootstrap), and until it has pinged the nodes that queried it
// they are not "good" and it hands none of them out, so a node whose
// address reached no later node stayed known to nobody (about 1 demo in 4
// ended with a node that never heard of the release). All of it takes at
// most 6s.
func (d *demo) settle(ctx context.Context, boot *network.Node) {
	bctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	for _, n := range d.nodes {
		select {
		case <-n.eng.Bootstrapped():
		case <-bctx.Done():
		}
	}
	boot.Bootstrap(bctx)
	var wg sync.WaitGroup
	for _, n := range d.nodes {
		nn := n.net
		wg.Go(func() { nn.Bootstrap(bctx) })
	}
	wg.Wait()
	want := min(8, len(d.nodes)-1)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := 0
		for _, n := range d.nodes {
			if n.net.TableSize() >= want {
				ready++
			}
		}
		if ready == len(d.nodes) {
			return
		}
		select {
		case <-bctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watch reads one node's events until it stops.
func (d *demo) watch(n *demoNode, e *engine.Engine) {
	for ev := range e.Events() {
		t := d.since()
		switch ev := ev.(type) {
		case engine.ReleaseFound:
			n.mu.Lock()
			if !n.isAware && t > 0 {
				n.isAware, n.aware = true, t
			}
			n.mu.Unlock()
		case engine.Progress:
			n.mu.Lock()
			n.fetched, n.wasted = ev.Fetched, ev.Wasted
			n.mu.Unlock()
		case engine.Verified:
			n.mu.Lock()
			if !n.isVerif && ev.ManifestID == d.manifest {
				n.isVerif, n.verified = true, t
				if !n.isAware {
					n.isAware, n.aware = true, t
				}
			}
			n.mu.Unlock()
			d.signal()
		case engine.Refused:
			if ev.What == engine.RefusedChunk {
				n.mu.Lock()
				n.refused++
				n.mu.Unlock()
			}
		case engine.Installed:
			got, err := os.ReadFile(n.target)
			n.mu.Lock()
			if err == nil && ev.ManifestID == d.manifest && bytes.Equal(got, d.data) {
				n.good = true
			} else {
				n.bad = true
			}
			n.mu.Unlock()
			d.signal()
		}
	}
}

// counts returns how many nodes verified and installed, and the chunk bytes
// all of them received.
func (d *demo) counts() (verified, installed int, moved int64) {
	for _, n := range d.nodes {
		n.mu.Lock()
		if n.isVerif {
			verified++
		}
		if n.good || n.bad {
			installed++
		}
		moved += n.fetched
		n.mu.Unlock()
	}
	return
}

func (d *demo) stopNodes() {
	var wg sync.WaitGroup
	for _, n := range d.nodes {
		if n == nil {
			continue
		}
		n.mu.Lock()
		e := n.eng
		n.mu.Unlock()
		if e != nil {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				e.Stop(ctx)
			})
		}
	}
	wg.Wait()
}

// report fills the simulation's report type, so `rpe demo --json` and
// `rpe sim --json` can be read by the same tools.
func (d *demo) report(size, pubUp int64, ups []int64, pubUploaded int64, chunkSize int) *simulation.Report {
	rep := &simulation.Report{
		Nodes: len(d.nodes), SizeBytes: size, Clock: "real", ChunkSize: chunkSize,
		PublisherUploadBytes: pubUploaded, TotalUploadBytes: pubUploaded,
	}
	if t, ok := simulation.Bound(size, pubUp, ups, nil); ok {
		rep.TMinS = &t
	}
	var verified, aware []float64
	for _, n := range d.nodes {
		n.mu.Lock()
		if n.good && n.isVerif {
			rep.Completed++
		}
		if n.bad {
			rep.BadInstalls++
		}
		if n.isVerif {
			verified = append(verified, n.verified.Seconds())
		}
		if n.isAware {
			aware = append(aware, n.aware.Seconds())
		}
		rep.TotalUploadBytes += n.uploaded
		rep.WastedBytes += n.wasted
		rep.RefusedChunks += n.refused
		n.mu.Unlock()
	}
	rep.Failed = rep.Nodes - rep.Completed
	rep.SetTimes(verified, aware)
	return rep
}

func printDemoSummary(w io.Writer, r *simulation.Report, elapsed time.Duration) {
	if r.TAllS != nil && r.Completed == r.Nodes {
		fmt.Fprintf(w, "all %d nodes updated in %.1f s (half of them by %.1f s)\n", r.Nodes, *r.TAllS, *r.TP50S)
	} else {
		fmt.Fprintf(w, "%d of %d nodes updated in %.1f s\n", r.Completed, r.Nodes, elapsed.Seconds())
	}
	copies := float64(r.PublisherUploadBytes) / float64(max(r.SizeBytes, 1))
	fmt.Fprintf(w, "the publisher uploaded %s = %.2f× the file; the nodes uploaded the other %s to each other\n",
		units.FormatSize(r.PublisherUploadBytes), copies, units.FormatSize(max(0, r.TotalUploadBytes-r.PublisherUploadBytes)))
	if r.TMinS != nil {
		ratio := ""
		if r.RatioToBound != nil {
			ratio = fmt.Sprintf(" (%.1f× the bound)", *r.RatioToBound)
		}
		fmt.Fprintf(w, "lower bound for these upload rates %.1f s%s; every byte was checked against the publisher's signature\n", *r.TMinS, ratio)
	}
	if r.BadInstalls > 0 {
		fmt.Fprintf(w, "%d nodes installed something other than the published bytes\n", r.BadInstalls)
	}
}

// demoProgress shows the demo's progress: a bar on a terminal, a plain line
// every two seconds otherwise, nothing with --quiet.
type demoProgress struct {
	w     io.Writer
	quiet bool
	bar   *progressbar.ProgressBar
	size  int64
	nodes int
	tty   bool
	last  time.Time
}

func newDemoProgress(w io.Writer, nodes int, size int64, quiet bool) *demoProgress {
	return &demoProgress{w: w, quiet: quiet, size: size, nodes: nodes, tty: !quiet && isTerminal(w)}
}

// newBar starts the bar, at the moment of publishing.
func (p *demoProgress) newBar() {
	p.bar = progressbar.NewOptions(p.nodes,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("nodes verified"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(25),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetRenderBlankState(true),
	)
}

func (p *demoProgress) line(format string, a ...any) {
	if !p.quiet {
		fmt.Fprintf(p.w, format+"\n", a...)
	}
}

func (p *demoProgress) update(t time.Duration, verified int, moved, pubServed int64) {
	if p.quiet {
		return
	}
	share := 0.0
	if moved > 0 {
		share = 100 * float64(pubServed) / float64(moved)
	}
	desc := fmt.Sprintf("moved %s, publisher sent %s (%.0f%%)", units.FormatSize(moved), units.FormatSize(pubServed), share)
	if p.tty && p.bar == nil {
		p.newBar()
	}
	if p.bar != nil {
		p.bar.Describe(desc)
		p.bar.Set(verified)
		return
	}
	if time.Since(p.last) < 2*time.Second && verified < p.nodes {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "%5.1fs  verified %d/%d nodes, %s\n", t.Seconds(), verified, p.nodes, desc)
}

func (p *demoProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
