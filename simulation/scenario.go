package simulation

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/rpe-project/engine/simulation/netsim"
)

// ErrBadScenario means a Scenario field is out of range.
var ErrBadScenario = errors.New("simulation: bad scenario")

// Scenario describes one simulated release. The zero value of every field
// except Nodes and Size means the default given in its comment. Rates are in
// bytes per second; 0 means unlimited.
type Scenario struct {
	// Nodes is the number of honest nodes (complete engines); at least 1.
	Nodes int
	// Size is the size of the published file in bytes; at least 1.
	Size int64
	// ChunkSize is the release's chunk size; default the release package's
	// default (256 KiB).
	ChunkSize int
	// Installed is the fraction, 0 to 1, of the release's chunks that every
	// node's installed file already holds (the others differ by a byte):
	// nodes copy those chunks locally instead of downloading them, and
	// Report.ReusedBytes says how many bytes that saved. Default 0: the
	// installed file shares nothing with the release.
	Installed float64
	// Up and Down are each node's link rates.
	Up, Down int64
	// RateSpread draws each node's Up and Down uniformly from
	// [rate·(1−RateSpread), rate·(1+RateSpread)] instead of giving every node
	// the same; 0 to 0.99, default 0.
	RateSpread float64
	// PublisherUp is the publisher's upload rate.
	PublisherUp int64
	// Latency is the one-way delay of every access link; a packet between
	// two hosts takes twice this. Default 10ms.
	Latency time.Duration
	// Loss is the probability, 0 to 1, that a packet is lost on each link.
	Loss float64
	// Churn is the fraction of nodes that are stopped in the middle of their
	// download and started again later with the same state directory.
	Churn float64
	// Hostile is the number of hostile peers, as a fraction of Nodes; they
	// come in addition to the honest nodes, cycling through the HostileKinds;
	// 0 to 1 (never more hostile peers than honest nodes).
	Hostile float64
	// HostilePeers adds one hostile peer of each kind listed, after those
	// of Hostile: a test that needs one attack in a given strength names
	// it here.
	HostilePeers []HostileKind
	// Attack tunes the abusive kinds (Staller, Churner, FakeAnnouncer);
	// its zero value means the defaults given in its fields.
	Attack Attack
	// PublisherLeavesAfter stops the publisher once it has uploaded this many
	// full copies of the file (chunk answers written in full; those still
	// going out are cut off, as when a real publisher goes away); 0 means it
	// stays.
	PublisherLeavesAfter int
	// Net is the network the nodes talk over: Netsim (the default) or
	// Loopback. On Loopback the engines enforce Up, Down and PublisherUp
	// themselves, hostile peers are not rate-limited, and Latency only
	// sets the default QueryResendDelay (200ms there); Loss must be 0.
	Net Net
	// Private makes the swarm private: the publisher and every honest node
	// share a secret, and two outsiders that know only the public key (a
	// complete engine and a hostile client) try to learn the version, find
	// peers and get chunks; Report.Outsider says what they got.
	Private bool
	// NAT puts fractions of the honest nodes behind NAT boxes of their own
	// (netsim only); PublisherNAT is the publisher's. Default: no NAT.
	NAT          NATMix
	PublisherNAT netsim.NATType
	// NoRelay keeps every node from relaying; by default the honest nodes
	// without a NAT opt in when some node is behind one.
	NoRelay bool
	// Seed fixes the topology, the rates drawn, the hostile set and the
	// churn schedule.
	Seed int64
	// Timeout bounds the run from the moment of publishing; default 10m.
	Timeout time.Duration

	// Tuning of every node. PollInterval is the mean time between DHT
	// lookups of the record (default 2s; it bounds how soon a node learns
	// of the release), FindInterval the time between peer lookups while
	// downloading (default 3s), QueryResendDelay the DHT query resend delay
	// (default 1s plus four one-way latencies: a shorter one floods the
	// simulated network with resends once it is busy), ChunkTimeout the limit
	// for one chunk request (default the engine's).
	PollInterval, FindInterval, QueryResendDelay, ChunkTimeout time.Duration
	// NoPoll turns every node's record polling off: nodes learn of the
	// release only from peers (the app's awareness mesh and gossip).
	NoPoll bool
	// Bootstraps is the number of plain DHT nodes that every node starts
	// from; default 3.
	Bootstraps int

	// A network like the real DHT (dhtnet.go). LatencyMax, when above
	// Latency, draws each host's one-way latency uniformly from [Latency,
	// LatencyMax]. DHTNodes adds that many DHT nodes without an engine,
	// started before the honest nodes; DHTJunk (0 to 1) of them answer with
	// junk (junk.go); DHTChurn is the fraction of the other ones replaced
	// per minute by new nodes on new addresses (those that left stay in
	// tables). Idle keeps every node idle this long after start-up before
	// publishing, and measures the DHT queries each starts
	// (Report.DHT.IdleQueriesPerMin). DHTProbes runs that many
	// put-then-lookup trials between honest nodes after the run
	// (Report.DHT). All default 0 (off).
	LatencyMax time.Duration
	DHTNodes   int
	DHTJunk    float64
	DHTChurn   float64
	Idle       time.Duration
	DHTProbes  int
	// Upgrade plays a fleet upgrading: before the nodes start, the DHT
	// holds the publisher's record of the version they run (each finds it
	// on its first lookup and holds it, as a fleet running last week's
	// release does), PollInterval defaults to the engine's 5m and Idle to
	// 1m (the mesh of a fleet that has been running is formed).
	Upgrade bool

	// Dir is where node directories are made; default a new temporary
	// directory, removed when Run returns.
	Dir string
	// Logger receives the harness's and every node's logs; nil is silent.
	Logger *slog.Logger
	// Virtual says Run is called inside a testing/synctest bubble, so its
	// times are virtual; it only labels Report.Clock.
	Virtual bool
	// OnProgress, when set, is called about twice a second and once at the
	// end, from one goroutine.
	OnProgress func(Progress)
}

// Progress is a live view of a run, for progress lines.
type Progress struct {
	Elapsed  time.Duration // since publishing; 0 before
	Phase    string        // "starting", "publishing", "running", "stopping"
	Started  int           // nodes started
	Aware    int           // nodes that know of the release
	Verified int           // nodes that hold it verified
	Total    int           // honest nodes
	// Moved is the chunk bytes every node received so far, duplicates
	// included; PublisherSent those the publisher uploaded; Size the
	// file's size.
	Moved, PublisherSent, Size int64
}

// HostileKind is one way a hostile peer misbehaves.
type HostileKind int

// The hostile kinds, assigned to hostile peers in turn.
const (
	// Corrupt serves the genuine manifest and chunks of wrong bytes.
	Corrupt HostileKind = iota
	// Trickle serves genuine chunks, each after a long delay.
	Trickle
	// Liar claims every chunk and then answers "not found" after a delay.
	Liar
	// StaleGossip gossips an old signed record to everyone it meets and
	// serves nothing.
	StaleGossip
	// Staller asks the peers of the release for chunks and reads each
	// answer at Attack.StallRate (slow retrieval turned on the servers'
	// upload slots).
	Staller
	// Churner opens connections to the peers of the release at
	// Attack.ChurnRate, each under a fresh node key, and holds them open
	// (connection churn against the servers' inbound slots).
	Churner
	// FakeAnnouncer announces Attack.FakePorts ports of its own address,
	// where nothing listens, for the release to the DHT nodes closest to
	// its swarm ID, again and again (announcement flooding).
	FakeAnnouncer
	numHostileKinds
)

// Attack tunes the abusive hostile kinds. Zero fields take the defaults
// given.
type Attack struct {
	// StalledAnswers is how many chunk requests a staller keeps open on
	// each peer it reaches (a request cut off or refused is made again);
	// default 8.
	StalledAnswers int
	// StallRate is how fast a staller reads each answer, in bytes per
	// second (its stream receive window is 1 KiB); default 1 KiB/s.
	StallRate int64
	// ChurnRate is how many new connections a churner opens per second,
	// round robin over the peers it found; default 10.
	ChurnRate float64
	// FakePorts is how many fake ports a fake announcer announces; default
	// 200.
	FakePorts int
	// Targets bounds the peers one staller or churner attacks (the first
	// it finds, in the order the DHT gives them); default 16.
	Targets int
}

func (a Attack) populate() Attack {
	if a.StalledAnswers == 0 {
		a.StalledAnswers = 8
	}
	if a.StallRate == 0 {
		a.StallRate = 1 << 10
	}
	if a.ChurnRate == 0 {
		a.ChurnRate = 10
	}
	if a.FakePorts == 0 {
		a.FakePorts = 200
	}
	if a.Targets == 0 {
		a.Targets = 16
	}
	return a
}

func (k HostileKind) String() string {
	switch k {
	case Corrupt:
		return "corrupt"
	case Trickle:
		return "trickle"
	case Liar:
		return "liar"
	case StaleGossip:
		return "stale-gossip"
	case Staller:
		return "staller"
	case Churner:
		return "churner"
	case FakeAnnouncer:
		return "fake-announcer"
	}
	return fmt.Sprintf("HostileKind(%d)", int(k))
}

// populate returns a copy with defaults filled in, or an error.
func (s Scenario) populate() (Scenario, error) {
	bad := func(format string, args ...any) (Scenario, error) {
		return s, fmt.Errorf("%w: "+format, append([]any{ErrBadScenario}, args...)...)
	}
	prob := func(p float64) bool { return !math.IsNaN(p) && p >= 0 && p <= 1 }
	switch {
	case s.Nodes < 1:
		return bad("nodes %d, want at least 1", s.Nodes)
	case s.Size < 1:
		return bad("size %d, want at least 1 byte", s.Size)
	case s.ChunkSize < 0:
		return bad("chunk size %d is negative", s.ChunkSize)
	case !prob(s.Installed):
		return bad("installed fraction %v not in [0, 1]", s.Installed)
	case s.Up < 0 || s.Down < 0 || s.PublisherUp < 0:
		return bad("negative rate")
	case math.IsNaN(s.RateSpread) || s.RateSpread < 0 || s.RateSpread > 0.99:
		return bad("rate spread %v not in [0, 0.99]", s.RateSpread)
	case s.Latency < 0:
		return bad("negative latency %v", s.Latency)
	case !prob(s.Loss) || s.Loss >= 0.5:
		return bad("loss %v not in [0, 0.5)", s.Loss)
	case !prob(s.Churn):
		return bad("churn %v not in [0, 1]", s.Churn)
	case math.IsNaN(s.Hostile) || s.Hostile < 0 || s.Hostile > 1:
		return bad("hostile %v not in [0, 1]", s.Hostile)
	case s.Net != "" && s.Net != Netsim && s.Net != Loopback:
		return bad("net %q: want %q or %q", s.Net, Netsim, Loopback)
	case s.Net == Loopback && s.Loss > 0:
		return bad("loss %v on loopback: the kernel does not lose packets on request", s.Loss)
	case s.Net == Loopback && s.Virtual:
		return bad("loopback uses real sockets and cannot run in virtual time")
	case s.PublisherLeavesAfter < 0:
		return bad("publisher-leaves-after %d is negative", s.PublisherLeavesAfter)
	case s.Timeout < 0 || s.PollInterval < 0 || s.FindInterval < 0 || s.QueryResendDelay < 0 || s.ChunkTimeout < 0:
		return bad("negative duration")
	case s.Bootstraps < 0:
		return bad("bootstraps %d is negative", s.Bootstraps)
	case s.Attack.StalledAnswers < 0 || s.Attack.StallRate < 0 || s.Attack.FakePorts < 0 || s.Attack.Targets < 0 ||
		math.IsNaN(s.Attack.ChurnRate) || s.Attack.ChurnRate < 0 || s.Attack.ChurnRate > 1000:
		return bad("attack %+v: negative, or churn rate above 1000/s", s.Attack)
	case s.Attack.FakePorts > 10000:
		return bad("attack: %d fake ports, want at most 10000", s.Attack.FakePorts)
	case s.LatencyMax < 0 || (s.LatencyMax > 0 && s.LatencyMax < s.Latency):
		return bad("latency-max %v below latency %v", s.LatencyMax, s.Latency)
	case s.DHTNodes < 0 || s.DHTProbes < 0 || s.Idle < 0:
		return bad("negative DHT nodes, probes or idle time")
	case !prob(s.DHTJunk) || !prob(s.DHTChurn):
		return bad("DHT junk %v or churn %v not in [0, 1]", s.DHTJunk, s.DHTChurn)
	case s.Net == Loopback && (s.LatencyMax > 0 || s.DHTNodes > 0):
		return bad("latency-max and DHT nodes exist only on netsim")
	case s.PublisherNAT < netsim.NATNone || s.PublisherNAT > netsim.NATSymmetric:
		return bad("publisher NAT type %d", int(s.PublisherNAT))
	case s.Net == Loopback && (len(s.NAT) > 0 || s.PublisherNAT != netsim.NATNone):
		return bad("NAT boxes exist only on netsim")
	}
	if err := s.NAT.validate(); err != nil {
		return s, err
	}
	for _, k := range s.HostilePeers {
		if k < 0 || k >= numHostileKinds {
			return bad("hostile kind %d", int(k))
		}
	}
	s.Attack = s.Attack.populate()
	if s.Latency == 0 {
		s.Latency = 10 * time.Millisecond
	}
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Minute
	}
	if s.PollInterval == 0 {
		s.PollInterval = 2 * time.Second
		if s.Upgrade {
			s.PollInterval = 5 * time.Minute
		}
	}
	if s.Upgrade && s.Idle == 0 {
		s.Idle = time.Minute
	}
	if s.FindInterval == 0 {
		s.FindInterval = 3 * time.Second
	}
	if s.Net == "" {
		s.Net = Netsim
	}
	if s.QueryResendDelay == 0 {
		s.QueryResendDelay = time.Second + 4*s.Latency
		if s.Net == Loopback {
			// Loopback answers in well under a millisecond; measured
			// with 50 nodes on two busy cores, 200ms did better than 1s.
			s.QueryResendDelay = 200 * time.Millisecond
		}
	}
	if s.Bootstraps == 0 {
		s.Bootstraps = 3
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// plan is everything a Scenario decides by its seed.
type plan struct {
	up, down []int64       // per honest node
	hostile  []HostileKind // per hostile peer
	churn    []churnPlan   // per honest node; nil entries are not churned
	boot     [][]int       // per honest node: earlier nodes it starts from
	nat      []netsim.NATType
}

// churnPlan says when a node is stopped and for how long.
type churnPlan struct {
	at   float64       // stop once this fraction of chunks is verified
	down time.Duration // then stay down this long
}

func (s Scenario) plan() plan {
	r := rand.New(rand.NewPCG(uint64(s.Seed), 0x72706573696d)) // "rpesim"
	p := plan{up: make([]int64, s.Nodes), down: make([]int64, s.Nodes), churn: make([]churnPlan, s.Nodes), boot: make([][]int, s.Nodes)}
	draw := func(rate int64) int64 {
		if rate == 0 || s.RateSpread == 0 {
			return rate
		}
		f := 1 - s.RateSpread + 2*s.RateSpread*r.Float64()
		return max(1, int64(float64(rate)*f))
	}
	for i := range s.Nodes {
		p.up[i] = draw(s.Up)
		p.down[i] = draw(s.Down)
	}
	for i := range s.Nodes {
		for range min(i, 3) {
			p.boot[i] = append(p.boot[i], r.IntN(i))
		}
	}
	// The churned nodes: a seeded permutation's first Churn·Nodes.
	nChurn := int(math.Round(s.Churn * float64(s.Nodes)))
	for _, i := range r.Perm(s.Nodes)[:nChurn] {
		p.churn[i] = churnPlan{
			at:   0.2 + 0.5*r.Float64(),
			down: time.Duration(500+r.IntN(2500)) * time.Millisecond,
		}
	}
	// A generator of its own, so a NAT mix leaves every other draw as it was.
	p.nat = s.NAT.assign(s.Nodes, rand.New(rand.NewPCG(uint64(s.Seed), 0x6e6174))) // "nat"
	nHostile := int(math.Round(s.Hostile * float64(s.Nodes)))
	for i := range nHostile {
		p.hostile = append(p.hostile, HostileKind(i%int(numHostileKinds)))
	}
	p.hostile = append(p.hostile, s.HostilePeers...)
	return p
}

// Bound is the Kumar–Ross lower bound on the time to give every node the
// file, max(S/u_s, S/d_min, N·S/(u_s + Σu_i)), in seconds; ok is false when
// every rate involved is unlimited. up and down are the nodes' rates, 0
// meaning unlimited.
func Bound(size int64, publisherUp int64, up, down []int64) (seconds float64, ok bool) {
	S := float64(size)
	var t float64
	if publisherUp > 0 {
		t = max(t, S/float64(publisherUp))
	}
	var dmin int64
	for _, d := range down {
		if d > 0 && (dmin == 0 || d < dmin) {
			dmin = d
		}
	}
	if dmin > 0 {
		t = max(t, S/float64(dmin))
	}
	if publisherUp > 0 {
		sum := float64(publisherUp)
		limited := true
		for _, u := range up {
			if u == 0 {
				limited = false
				break
			}
			sum += float64(u)
		}
		if limited {
			t = max(t, float64(len(up))*S/sum)
		}
	}
	return t, t > 0
}

func (s Scenario) clock() string {
	if s.Virtual {
		return "virtual"
	}
	return "real"
}
