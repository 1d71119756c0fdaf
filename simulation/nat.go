package simulation

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/simulation/netsim"
)

// NATMix is the fraction of honest nodes behind each kind of NAT box. The
// fractions must not add up to more than 1; the rest of the nodes have no
// NAT. Nil or empty means no node is behind a NAT.
type NATMix map[netsim.NATType]float64

// ParseNATMix parses "none=0.2,port-restricted=0.7,symmetric=0.1": NAT type
// names as netsim.NATType.String gives them, each with a fraction.
func ParseNATMix(s string) (NATMix, error) {
	mix := NATMix{}
	if strings.TrimSpace(s) == "" {
		return mix, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		name, frac, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%w: NAT mix %q: want type=fraction", ErrBadScenario, part)
		}
		typ, err := netsim.ParseNATType(strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("%w: NAT mix: %v", ErrBadScenario, err)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(frac), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: NAT mix %q: %v", ErrBadScenario, part, err)
		}
		if _, dup := mix[typ]; dup {
			return nil, fmt.Errorf("%w: NAT mix names %s twice", ErrBadScenario, typ)
		}
		mix[typ] = f
	}
	return mix, mix.validate()
}

func (m NATMix) validate() error {
	sum := 0.0
	for typ, f := range m {
		if typ < netsim.NATNone || typ > netsim.NATSymmetric {
			return fmt.Errorf("%w: NAT mix: %w %d", ErrBadScenario, netsim.ErrBadNATType, int(typ))
		}
		if math.IsNaN(f) || f < 0 || f > 1 {
			return fmt.Errorf("%w: NAT mix: %s fraction %v not in [0, 1]", ErrBadScenario, typ, f)
		}
		sum += f
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("%w: NAT mix fractions add up to %v, more than 1", ErrBadScenario, sum)
	}
	return nil
}

// String formats the mix as ParseNATMix reads it, in NAT type order.
func (m NATMix) String() string {
	var parts []string
	for _, typ := range netsim.NATTypes() {
		if f, ok := m[typ]; ok {
			parts = append(parts, fmt.Sprintf("%s=%g", typ, f))
		}
	}
	return strings.Join(parts, ",")
}

// assign gives each of n nodes a NAT type: round(fraction·n) nodes of each
// type (the largest remainders get the nodes rounding leaves over, so the
// counts add up), placed by a seeded permutation.
func (m NATMix) assign(n int, r *rand.Rand) []netsim.NATType {
	out := make([]netsim.NATType, n)
	if len(m) == 0 {
		return out
	}
	types := slices.Collect(func(yield func(netsim.NATType) bool) {
		for _, t := range netsim.NATTypes() {
			if _, ok := m[t]; ok && t != netsim.NATNone && !yield(t) {
				return
			}
		}
	})
	perm := r.Perm(n)
	k := 0
	for _, t := range types {
		c := int(math.Round(m[t] * float64(n)))
		for ; c > 0 && k < n; c-- {
			out[perm[k]] = t
			k++
		}
	}
	return out
}

// NATReport is what a run with NAT boxes reports.
type NATReport struct {
	// Mix is the scenario's mix; PublisherNAT the publisher's NAT type.
	Mix          string `json:"mix"`
	PublisherNAT string `json:"publisher_nat"`
	// Nodes and Completed count the honest nodes behind each NAT type and
	// those of them that completed.
	Nodes     map[string]int `json:"nodes"`
	Completed map[string]int `json:"completed"`
	// Punched counts the dials a hole punch opened, PunchFailed those
	// whose punch got nothing through, Introduced the introductions nodes
	// made as rendezvous; all nodes' last incarnations, publisher excluded.
	Punched     int64 `json:"punched"`
	PunchFailed int64 `json:"punch_failed"`
	Introduced  int64 `json:"introduced"`
	// Relayed counts the dials that went through a relay, RelayFailed
	// those whose every relay refused, RelayBytes the payload bytes relays
	// forwarded (ciphertext, QUIC overhead included); Reservations the
	// nodes behind NAT holding a relay reservation at the end.
	Relayed      int64 `json:"relayed"`
	RelayFailed  int64 `json:"relay_failed"`
	RelayBytes   int64 `json:"relay_bytes"`
	Reservations int   `json:"reservations"`
	// Paths says, per connection path ("direct", "punch", "relay"),
	// which pairs exchanged chunks and how many chunk bytes went each way.
	Paths map[string]*PathReport `json:"paths"`
	// NATShare is the share of all chunk bytes that went between two
	// nodes behind NAT over a direct or punched connection (the issue's
	// ≥ 60 % figure); the publisher counts as a node.
	NATShare float64 `json:"nat_to_nat_direct_share"`
}

// PathReport is what went over connections of one path.
type PathReport struct {
	// Pairs counts the (uploader, downloader) pairs that moved at least
	// one chunk over such a connection, per direction as in Bytes.
	Pairs map[string]int `json:"pairs"`
	// Bytes counts the chunk bytes served, by direction: "nat->nat",
	// "nat->open", "open->nat", "open->open" ("open": no NAT).
	Bytes map[string]int64 `json:"chunk_bytes"`
}

// pathTally counts chunk bytes per connection path and NAT class, from
// the engines' Served events.
type pathTally struct {
	mu    sync.Mutex
	natOf map[netip.Addr]bool // public address → behind a NAT
	paths map[string]*PathReport
	pairs map[string]bool // uploader|downloader|path seen
	total int64
	n2n   int64 // NAT to NAT, direct or punched
}

// host records whether the host with public address ip is behind a NAT.
func (t *pathTally) host(ip netip.Addr, typ netsim.NATType) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.natOf == nil {
		t.natOf = map[netip.Addr]bool{}
	}
	t.natOf[ip] = typ != netsim.NATNone
}

func class(nat bool) string {
	if nat {
		return "nat"
	}
	return "open"
}

// add counts one chunk served by the host at from.
func (t *pathTally) add(from netip.Addr, ev engine.Served) {
	to, err := netip.ParseAddrPort(ev.Addr)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fromNAT, toNAT := t.natOf[from], t.natOf[to.Addr().Unmap()]
	dir := class(fromNAT) + "->" + class(toNAT)
	if t.paths == nil {
		t.paths = map[string]*PathReport{}
		t.pairs = map[string]bool{}
	}
	pr := t.paths[ev.Path]
	if pr == nil {
		pr = &PathReport{Pairs: map[string]int{}, Bytes: map[string]int64{}}
		t.paths[ev.Path] = pr
	}
	pr.Bytes[dir] += int64(ev.Bytes)
	if k := from.String() + "|" + to.Addr().Unmap().String() + "|" + ev.Path; !t.pairs[k] {
		t.pairs[k] = true
		pr.Pairs[dir]++
	}
	t.total += int64(ev.Bytes)
	if fromNAT && toNAT && ev.Path != "relay" {
		t.n2n += int64(ev.Bytes)
	}
}

// report fills rep's path figures.
func (t *pathTally) report(rep *NATReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rep.Paths = t.paths
	if t.total > 0 {
		rep.NATShare = float64(t.n2n) / float64(t.total)
	}
}

// drainPublisher reads the publisher's events until they end, counting
// its chunk bytes per path; the returned channel closes then.
func (r *run) drainPublisher(ch <-chan engine.Event, h host) <-chan struct{} {
	r.paths.host(h.publicIP(), r.s.PublisherNAT)
	done := make(chan struct{})
	go func() {
		for ev := range ch {
			if sv, ok := ev.(engine.Served); ok {
				r.paths.add(h.publicIP(), sv)
			}
		}
		close(done)
	}()
	return done
}

// relays says whether honest node i opts in to relaying: when some node
// is behind a NAT, the nodes without one do, unless NoRelay.
func (r *run) relays(i int) bool {
	nat := r.s.PublisherNAT != netsim.NATNone
	for _, f := range r.s.NAT {
		nat = nat || f > 0
	}
	return nat && !r.s.NoRelay && r.plan.nat[i] == netsim.NATNone
}

// natReport counts nodes and completions per NAT type; nil without NATs.
func (r *run) natReport() *NATReport {
	if len(r.s.NAT) == 0 && r.s.PublisherNAT == netsim.NATNone {
		return nil
	}
	rep := &NATReport{Mix: r.s.NAT.String(), PublisherNAT: r.s.PublisherNAT.String(),
		Nodes: make(map[string]int), Completed: make(map[string]int)}
	for _, n := range r.nodes {
		typ := r.plan.nat[n.i].String()
		rep.Nodes[typ]++
		n.mu.Lock()
		if n.isVerif {
			rep.Completed[typ]++
		}
		if n.net != nil {
			st := n.net.Reach().Stats()
			rep.Punched += st.Punched
			rep.PunchFailed += st.PunchFailed
			rep.Introduced += st.Introduced
			rep.Relayed += st.Relayed
			rep.RelayFailed += st.RelayFailed
			rep.RelayBytes += st.RelayBytes
			if n.net.Reach().Reservation().IsValid() {
				rep.Reservations++
			}
		}
		n.mu.Unlock()
	}
	r.paths.report(rep)
	return rep
}
