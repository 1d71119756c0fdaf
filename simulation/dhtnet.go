package simulation

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation/netsim"
)

// A network like the real DHT (Scenario.LatencyMax, DHTNodes, DHTChurn,
// DHTJunk, Idle, DHTProbes, Upgrade). The real Mainline DHT is millions of
// nodes of which few run rpe, many have left while others' tables still
// list them, some answer with junk, and paths take from tens to hundreds of
// milliseconds. Here: plain DHT nodes (network.Node, no engine) make up the
// bulk of the DHT; a fraction of them is replaced every minute by new ones
// on new addresses (the departed stay in tables until found out); junk
// nodes (junk.go) answer every lookup with nodes and peers that do not
// exist and records that do not verify; each host draws its own latency.
// Every address stays in 127.0.0.0/8.

// DHTReport is what a run measured of the DHT itself; nil when the scenario
// used none of the DHT options.
type DHTReport struct {
	// Nodes and Junk are the plain and junk DHT nodes at the start; Left
	// and Joined count the plain ones replaced by churn during the run.
	Nodes  int `json:"nodes"`
	Junk   int `json:"junk"`
	Left   int `json:"left"`
	Joined int `json:"joined"`
	// Puts and Lookups are the probe trials (Scenario.DHTProbes): a random
	// honest node puts a record under a key of the trial's own, then
	// another looks it up and must find that seq. PutsOK and LookupsOK
	// succeeded; the times are of every trial, failed ones included, in
	// seconds on the run's clock.
	Puts       int      `json:"puts"`
	PutsOK     int      `json:"puts_ok"`
	PutP50S    *float64 `json:"put_p50_s"`
	PutP99S    *float64 `json:"put_p99_s"`
	Lookups    int      `json:"lookups"`
	LookupsOK  int      `json:"lookups_ok"`
	LookupP50S *float64 `json:"lookup_p50_s"`
	LookupP99S *float64 `json:"lookup_p99_s"`
	// IdleS is how long the nodes stayed idle before the publish
	// (Scenario.Idle). IdleQueriesPerMin is the DHT queries an idle honest
	// node started per minute in that window, mean over the nodes (answers
	// to others' queries not counted); IdleQueriesMaxPerMin the busiest
	// node's.
	IdleS                float64  `json:"idle_s"`
	IdleQueriesPerMin    *float64 `json:"idle_queries_per_node_min"`
	IdleQueriesMaxPerMin *float64 `json:"idle_queries_max_per_node_min"`
	// IdleQueriesByKind splits IdleQueriesPerMin by KRPC method of the
	// queries rpe makes (get: record lookups; get_peers: peer and mesh
	// lookups and the lookup before an announce; put, announce_peer;
	// find_node and ping: bootstraps), "table" being the DHT library's
	// own table maintenance.
	IdleQueriesByKind map[string]float64 `json:"idle_queries_by_kind,omitempty"`
}

// wantDHT says whether the scenario asks for any DHT measurement.
func (s Scenario) wantDHT() bool {
	return s.DHTNodes > 0 || s.Idle > 0 || s.DHTProbes > 0 || s.LatencyMax > 0
}

// latencyNet draws every new host's one-way latency uniformly from
// [Latency, LatencyMax] (a path between two hosts then takes twice that
// range), from a generator of its own so the scenario's other draws stay
// as they were.
type latencyNet struct {
	hostNet
	lo, hi time.Duration
	mu     sync.Mutex
	rng    *rand.Rand
}

func newLatencyNet(n hostNet, s Scenario) *latencyNet {
	return &latencyNet{hostNet: n, lo: s.Latency, hi: s.LatencyMax,
		rng: rand.New(rand.NewPCG(uint64(s.Seed), 0x6c6174))} // "lat"
}

func (l *latencyNet) draw(link netsim.Link) netsim.Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	link.Latency = l.lo + time.Duration(l.rng.Int64N(int64(l.hi-l.lo)+1))
	return link
}

func (l *latencyNet) addHost(link netsim.Link) (host, error) { return l.hostNet.addHost(l.draw(link)) }
func (l *latencyNet) addHostNAT(link netsim.Link, t netsim.NATType) (host, error) {
	return l.hostNet.addHostNAT(l.draw(link), t)
}

// dhtPop is the plain DHT population of a run and its churn.
type dhtPop struct {
	r   *run
	rng *rand.Rand // under mu

	mu     sync.Mutex
	live   []*plainNode
	junk   []*junkNode
	left   int
	joined int

	stop chan struct{}
	wg   sync.WaitGroup
}

// plainNode is a DHT node without an engine.
type plainNode struct {
	node  *network.Node
	conns []net.PacketConn
}

func (p *plainNode) close() {
	p.node.Close()
	closeAll(p.conns)
}

// startDHT adds the scenario's plain and junk DHT nodes, each bootstrapped
// from the run's bootstrap nodes and a few earlier plain ones.
func (r *run) startDHT(ctx context.Context) error {
	if r.s.DHTNodes == 0 {
		return nil
	}
	d := &dhtPop{r: r, rng: rand.New(rand.NewPCG(uint64(r.s.Seed), 0x646874)), stop: make(chan struct{})} // "dht"
	r.dht = d
	nJunk := int(float64(r.s.DHTNodes) * r.s.DHTJunk)
	var wg sync.WaitGroup
	errs := make(chan error, r.s.DHTNodes)
	sem := make(chan struct{}, startParallel)
	for i := range r.s.DHTNodes - nJunk {
		p, err := d.addPlain(ctx, i)
		if err != nil {
			return err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := p.node.Bootstrap(bctx); err != nil {
				errs <- fmt.Errorf("simulation: DHT node %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		r.log.Warn("simulation: DHT node did not bootstrap", "err", err)
	}
	for i := range nJunk {
		j, err := d.addJunk(i)
		if err != nil {
			return err
		}
		d.junk = append(d.junk, j)
	}
	return nil
}

// addPlain starts one plain DHT node on a new host and adds it to the live
// set; it does not bootstrap it.
func (d *dhtPop) addPlain(ctx context.Context, i int) (*plainNode, error) {
	r := d.r
	h, err := r.net.addHost(netsim.Link{Latency: r.s.Latency, Loss: r.s.Loss})
	if err != nil {
		return nil, fmt.Errorf("simulation: DHT host: %w", err)
	}
	cs, err := r.listen(h)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	boot := slices.Clone(r.addrs)
	for range min(3, len(d.live)) {
		boot = append(boot, d.live[d.rng.IntN(len(d.live))].node.DHTAddr().String())
	}
	d.mu.Unlock()
	n, err := network.New(ctx, network.Config{
		DHTConn: cs[0], QUICConn: cs[1], Bootstrap: boot,
		QueryResendDelay: r.s.QueryResendDelay, Logger: r.log.With("dht", i),
	})
	if err != nil {
		closeAll(cs)
		return nil, fmt.Errorf("simulation: DHT node: %w", err)
	}
	p := &plainNode{node: n, conns: cs}
	d.mu.Lock()
	d.live = append(d.live, p)
	d.mu.Unlock()
	return p, nil
}

// addrs returns the DHT addresses of up to n live plain nodes, drawn at
// random, for a node to start from.
func (d *dhtPop) addrs(n int) []string {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for range min(n, len(d.live)) {
		out = append(out, d.live[d.rng.IntN(len(d.live))].node.DHTAddr().String())
	}
	return out
}

// churn replaces DHTChurn of the live plain nodes every minute, one at a
// time at even intervals: a random one leaves (its entries stay in the
// others' tables) and a new one joins on a new address. It runs until
// close.
func (d *dhtPop) churn(ctx context.Context) {
	if d == nil || d.r.s.DHTChurn == 0 {
		return
	}
	every := time.Duration(float64(time.Minute) / (d.r.s.DHTChurn * float64(d.r.s.DHTNodes)))
	d.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-t.C:
			case <-d.stop:
				return
			case <-ctx.Done():
				return
			}
			d.mu.Lock()
			if len(d.live) < 2 {
				d.mu.Unlock()
				continue
			}
			k := d.rng.IntN(len(d.live))
			gone := d.live[k]
			d.live = slices.Delete(d.live, k, k+1)
			d.left++
			d.mu.Unlock()
			d.wg.Go(gone.close)
			p, err := d.addPlain(ctx, d.r.s.DHTNodes+i)
			if err != nil {
				d.r.log.Warn("simulation: DHT churn: join", "err", err)
				continue
			}
			d.mu.Lock()
			d.joined++
			d.mu.Unlock()
			d.wg.Go(func() {
				bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				p.node.Bootstrap(bctx)
			})
		}
	})
}

// close stops the churn and every plain and junk node.
func (d *dhtPop) close() {
	if d == nil {
		return
	}
	select {
	case <-d.stop:
		return
	default:
	}
	close(d.stop)
	d.wg.Wait()
	d.mu.Lock()
	live, junk := d.live, d.junk
	d.live, d.junk = nil, nil
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range live {
		wg.Go(p.close)
	}
	for _, j := range junk {
		wg.Go(j.close)
	}
	wg.Wait()
}

// putOldRecord puts the publisher's record of the old version, as a fleet
// that upgraded before holds it (Scenario.Upgrade), from the first
// bootstrap node. The entry's manifest is never fetched: every node runs
// that version already.
func (r *run) putOldRecord(ctx context.Context) error {
	v, _ := release.ParseVersion(oldVersion)
	sp, err := release.NewSignedPacket(r.key, []release.Entry{{
		App: app, Channel: release.DefaultChannel, Platform: release.DefaultPlatform(), Version: v,
		ManifestID: release.ManifestID(sha256.Sum256([]byte("release " + oldVersion))), Size: r.s.Size,
	}}, release.SeqNow(time.Now()))
	if err != nil {
		return fmt.Errorf("simulation: old record: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.boots[0].PutRecord(pctx, sp); err != nil {
		return fmt.Errorf("simulation: put the record of %s: %w", oldVersion, err)
	}
	return nil
}

// idle keeps every node idle for Scenario.Idle and measures the DHT
// queries each started meanwhile.
func (r *run) idle(ctx context.Context, rep *DHTReport) {
	if r.s.Idle == 0 {
		return
	}
	before := r.queriesPerNode()
	t := time.NewTimer(r.s.Idle)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return
	}
	after := r.queriesPerNode()
	mins := r.s.Idle.Minutes()
	rep.IdleS = seconds(r.s.Idle)
	mean, kinds, nodes := queryDelta(before, after)
	if nodes == 0 {
		return
	}
	most := 0.0
	for i, a := range after {
		if b, ok := before[i]; ok && a.OutboundQueries >= b.OutboundQueries {
			most = max(most, float64(a.OutboundQueries-b.OutboundQueries)/mins)
		}
	}
	rep.IdleQueriesPerMin = ptr(mean / mins)
	rep.IdleQueriesMaxPerMin = ptr(most)
	for k := range kinds {
		kinds[k] /= mins
	}
	rep.IdleQueriesByKind = kinds
}

// queryDelta is the mean number of DHT queries a node started between
// two snapshots of queriesPerNode, in all and by kind ("table": the
// library's own); nodes restarted in between are left out.
func queryDelta(before, after map[int]network.Stats) (mean float64, kinds map[string]float64, nodes int) {
	kinds = map[string]float64{}
	var sum int64
	for i, a := range after {
		b, ok := before[i]
		if !ok || a.OutboundQueries < b.OutboundQueries {
			continue // restarted: not comparable
		}
		d := a.OutboundQueries - b.OutboundQueries
		sum += d
		nodes++
		for k, c := range a.QueriesByKind {
			kinds[k] += float64(c - b.QueriesByKind[k])
			d -= c - b.QueriesByKind[k]
		}
		kinds["table"] += float64(d)
	}
	if nodes == 0 {
		return 0, nil, 0
	}
	for k := range kinds {
		kinds[k] /= float64(nodes)
	}
	return float64(sum) / float64(nodes), kinds, nodes
}

// queriesPerNode returns each running honest node's DHT statistics (the
// queries it started), keyed by node index.
func (r *run) queriesPerNode() map[int]network.Stats {
	out := make(map[int]network.Stats, len(r.nodes))
	for _, n := range r.nodes {
		n.mu.Lock()
		if n.eng != nil && n.net != nil {
			out[n.i] = n.net.Stats()
		}
		n.mu.Unlock()
	}
	return out
}

// probeDHT runs Scenario.DHTProbes put-then-lookup trials between random
// running honest nodes, four at a time, each under a key of its own, with
// the budgets of rpe publish (30 s) and rpe status (15 s).
func (r *run) probeDHT(ctx context.Context, rep *DHTReport) {
	if r.s.DHTProbes == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(uint64(r.s.Seed), 0x70726f6265)) // "probe"
	type trial struct {
		key          [32]byte
		from, to     *network.Node
		put, lookup  time.Duration
		putOK, getOK bool
	}
	var running []*network.Node
	for _, n := range r.nodes {
		n.mu.Lock()
		if n.eng != nil && n.net != nil {
			running = append(running, n.net)
		}
		n.mu.Unlock()
	}
	if len(running) < 2 {
		return
	}
	trials := make([]*trial, r.s.DHTProbes)
	for i := range trials {
		t := &trial{key: seedBytes(r.s.Seed, fmt.Sprint("probe ", i))}
		a := rng.IntN(len(running))
		b := (a + 1 + rng.IntN(len(running)-1)) % len(running)
		t.from, t.to = running[a], running[b]
		trials[i] = t
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, t := range trials {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key, err := release.GenerateSecretKey(rand.NewChaCha8(t.key))
			if err != nil {
				return
			}
			pub := release.PublicKeyOf(key)
			sp, err := release.NewSignedPacket(key, nil, release.SeqNow(time.Now()))
			if err != nil {
				return
			}
			start := time.Now()
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = t.from.PutRecord(pctx, sp)
			cancel()
			t.put, t.putOK = time.Since(start), err == nil
			if err != nil {
				r.log.Info("simulation: DHT probe: put", "err", err)
			}
			start = time.Now()
			gctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			got, _, err := t.to.GetRecord(gctx, pub)
			cancel()
			t.lookup, t.getOK = time.Since(start), err == nil && got.Seq == sp.Seq
			if err != nil {
				r.log.Info("simulation: DHT probe: lookup", "err", err)
			}
		})
	}
	wg.Wait()
	var puts, gets []float64
	for _, t := range trials {
		rep.Puts++
		rep.Lookups++
		if t.putOK {
			rep.PutsOK++
		}
		if t.getOK {
			rep.LookupsOK++
		}
		puts = append(puts, seconds(t.put))
		gets = append(gets, seconds(t.lookup))
	}
	slices.Sort(puts)
	slices.Sort(gets)
	rep.PutP50S, rep.PutP99S = percentile(puts, len(puts), .5), percentile(puts, len(puts), .99)
	rep.LookupP50S, rep.LookupP99S = percentile(gets, len(gets), .5), percentile(gets, len(gets), .99)
}

// dhtReport fills the population's counts.
func (d *dhtPop) report(rep *DHTReport) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rep.Nodes = d.r.s.DHTNodes - len(d.junk)
	rep.Junk = len(d.junk)
	rep.Left, rep.Joined = d.left, d.joined
}

// junkAddr is an address in 127.0.0.0/8 where no host of a run lives (the
// netsim subnet is 127.20.0.0/16): a packet sent there is dropped.
func junkAddr(rng *rand.Rand) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 21, byte(rng.IntN(256)), byte(1 + rng.IntN(254))}), uint16(1024+rng.IntN(60000)))
}
