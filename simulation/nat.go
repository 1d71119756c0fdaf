package simulation

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

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
		}
		n.mu.Unlock()
	}
	return rep
}
