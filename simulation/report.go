package simulation

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rpe-project/engine/simulation/netsim"
)

// Report is what a run measured. Times are seconds since the moment of
// publishing (engine.Publish was called), on the clock named by Clock. A
// pointer field is null in JSON when the figure does not exist (no bound for
// unlimited rates, a percentile not reached before the timeout).
type Report struct {
	Nodes       int `json:"nodes"`        // honest nodes
	Completed   int `json:"completed"`    // verified and installed the published bytes
	Failed      int `json:"failed"`       // nodes - completed
	BadInstalls int `json:"bad_installs"` // installed anything else (must be 0)

	SizeBytes int64    `json:"size_bytes"`
	TMinS     *float64 `json:"t_min_s"` // Kumar–Ross bound
	TP50S     *float64 `json:"t_p50_s"` // half the nodes verified
	TP90S     *float64 `json:"t_p90_s"`
	TP99S     *float64 `json:"t_p99_s"`
	TAllS     *float64 `json:"t_all_s"` // every node verified
	// RatioToBound is TAllS / TMinS.
	RatioToBound *float64 `json:"ratio_to_bound"`

	PublisherUploadBytes int64 `json:"publisher_upload_bytes"` // chunk bytes
	TotalUploadBytes     int64 `json:"total_upload_bytes"`     // chunk bytes, publisher included
	WastedBytes          int64 `json:"wasted_bytes"`           // duplicate and rejected chunk bytes received
	// ReusedBytes is the chunk bytes nodes copied from their installed
	// file instead of downloading (Scenario.Installed), summed over nodes.
	ReusedBytes int64 `json:"reused_bytes"`
	// TAwareP99S is when 99 % of the nodes knew of the release.
	TAwareP99S *float64 `json:"t_aware_p99_s"`
	// Aware counts the nodes that knew of the release by the end;
	// TAwareAllS is when the last of them learnt it (null unless all did).
	Aware        int      `json:"aware"`
	TAwareAllS   *float64 `json:"t_aware_all_s"`
	PeakRSSBytes int64    `json:"peak_rss_bytes"` // process high-water mark
	WallS        float64  `json:"wall_s"`         // the whole run, start-up included
	// CPUS is the CPU time (user and system) the whole process used
	// during the run, start-up included; null where the system does not
	// say. With two cores, it can reach twice WallS.
	CPUS *float64 `json:"cpu_s"`
	// IdleCPUMsPerNodeS is what a node costs while it waits for a release:
	// the process CPU time during the idle phase (Scenario.Idle), in
	// milliseconds per node and per second of that phase (real seconds
	// under the real clock, virtual ones in a bubble); null without an
	// idle phase.
	IdleCPUMsPerNodeS *float64 `json:"idle_cpu_ms_per_node_s"`

	// Clock is "real" or "virtual" (a testing/synctest bubble).
	Clock string `json:"clock"`
	// Net is the network the nodes used: "netsim" or "loopback".
	Net       Net   `json:"net"`
	Seed      int64 `json:"seed"`
	ChunkSize int   `json:"chunk_size"`
	// Hostile, Churned and Restarts count hostile peers, nodes that were
	// stopped mid-download, and those that were started again.
	Hostile  int `json:"hostile"`
	Churned  int `json:"churned"`
	Restarts int `json:"restarts"`
	// RefusedChunks counts chunks nodes refused (bad hash).
	RefusedChunks int64 `json:"refused_chunks"`
	// CorruptServed counts corrupt chunk answers hostile peers handed over
	// (the attack's attempts; how many reached a node depends on timing).
	CorruptServed int64 `json:"corrupt_served"`
	// Attack counts what the stallers, churners and fake announcers did
	// and what the honest nodes refused them; nil when there were none.
	Attack *AttackReport `json:"attack,omitempty"`
	// RestartToVerifiedMaxS is, over the nodes that were stopped and
	// started again, the longest time from a restart to the release
	// verified; null when no restarted node verified it.
	RestartToVerifiedMaxS *float64 `json:"restart_to_verified_max_s"`
	// Outsider is what the outsiders of a private scenario learned; nil
	// for a public one.
	Outsider *OutsiderReport `json:"outsider,omitempty"`
	// PublisherLeftS is when the publisher stopped, if it did.
	PublisherLeftS *float64 `json:"publisher_left_s"`
	// StartupS is the time from the start of the run until publishing
	// (starting every node and letting the DHT settle); PublishS the time
	// engine.Publish took.
	StartupS float64 `json:"startup_s"`
	PublishS float64 `json:"publish_s"`
	// NetBytesSent is every UDP payload byte sent on the simulated network
	// (DHT, QUIC headers and retransmissions included); 0 on loopback,
	// where the kernel carries them.
	NetBytesSent int64 `json:"net_bytes_sent"`
	// NAT says which nodes sat behind which NAT type and how many of them
	// completed; nil when no node, nor the publisher, was behind a NAT.
	NAT *NATReport `json:"nat,omitempty"`
	// DHTQueriesPerNode is the DHT queries an honest node started from
	// the publish to the end of the run (record and peer lookups,
	// announces, table maintenance; resends not counted), mean over the
	// nodes that were not restarted; DHTQueriesByKind splits it as
	// DHTReport.IdleQueriesByKind does.
	DHTQueriesPerNode float64            `json:"dht_queries_per_node"`
	DHTQueriesByKind  map[string]float64 `json:"dht_queries_by_kind,omitempty"`
	// DHT is what the run measured of the DHT itself (dhtnet.go); nil
	// unless the scenario asked for it.
	DHT *DHTReport `json:"dht,omitempty"`
	// AddrViolations counts packets from or to an address outside
	// 127.0.0.0/8 (must be 0; netsim would refuse to send them anyway).
	AddrViolations int64 `json:"addr_violations"`
	// Series is the completion curve: after each node's verification, the
	// fraction of nodes verified and aware.
	Series []Point `json:"series"`
}

// AttackReport counts the abusive hostile peers' attempts, as they saw
// them, and what the honest side did about them.
type AttackReport struct {
	// Stallers: connections made, chunk requests opened and read at a
	// trickle (StalledAnswers), of which the server abandoned the answer
	// mid-way (StalledCut: cancelled below its minimum answer rate) or
	// refused it at once (StalledRefused: busy, a penalised peer or one
	// over its share), and the answer bytes they read.
	Stallers         int   `json:"stallers"`
	StallConnections int64 `json:"stall_connections"`
	StalledAnswers   int64 `json:"stalled_answers"`
	StalledCut       int64 `json:"stalled_cut"`
	StalledRefused   int64 `json:"stalled_refused"`
	StalledBytes     int64 `json:"stalled_bytes"`
	// Churners: dials under fresh identities, of which connected; of those
	// the honest node closed as too many (ChurnRefused: busy, the
	// handshake rate limit or no room) or dropped later (ChurnDropped:
	// evicted or closed otherwise), and dials that failed outright.
	Churners         int   `json:"churners"`
	ChurnDials       int64 `json:"churn_dials"`
	ChurnConnections int64 `json:"churn_connections"`
	ChurnRefused     int64 `json:"churn_refused"`
	ChurnDropped     int64 `json:"churn_dropped"`
	ChurnFailed      int64 `json:"churn_failed"`
	// Fake announcers: announce_peer queries sent for fake ports and how
	// many the DHT nodes accepted; FakeEvicted counts entries the honest
	// DHT nodes' peer stores dropped to keep at most a few ports per
	// address, and FakeStoredMax the most ports of one fake announcer's
	// address any honest node held for the release at the end.
	FakeAnnouncers    int   `json:"fake_announcers"`
	FakeAnnouncements int64 `json:"fake_announcements"`
	FakeAccepted      int64 `json:"fake_accepted"`
	FakeEvicted       int64 `json:"fake_evicted"`
	FakeStoredMax     int   `json:"fake_stored_max"`
}

// Point is one step of the completion curve.
type Point struct {
	T        float64 `json:"t_s"`
	Verified float64 `json:"verified"` // fraction of nodes
	Aware    float64 `json:"aware"`    // fraction of nodes
}

// percentile returns the time by which a fraction q of n nodes had done
// something, given the sorted times of those that did; nil if fewer did.
func percentile(sorted []float64, n int, q float64) *float64 {
	k := int(math.Ceil(q * float64(n)))
	if k < 1 {
		k = 1
	}
	if k > len(sorted) {
		return nil
	}
	v := sorted[k-1]
	return &v
}

func seconds(d time.Duration) float64 { return d.Seconds() }

func ptr(v float64) *float64 { return &v }

// SetTimes fills the timing figures of r (percentiles, ratio to the bound,
// the completion series) from each node's verify and aware times, in
// seconds; the slices are sorted in place. r.Nodes and r.TMinS must be set.
// The demo, which runs its own nodes, uses it too.
func (r *Report) SetTimes(verified, aware []float64) {
	slices.Sort(verified)
	slices.Sort(aware)
	r.TP50S = percentile(verified, r.Nodes, 0.50)
	r.TP90S = percentile(verified, r.Nodes, 0.90)
	r.TP99S = percentile(verified, r.Nodes, 0.99)
	r.TAllS = percentile(verified, r.Nodes, 1)
	r.TAwareP99S = percentile(aware, r.Nodes, 0.99)
	r.Aware = len(aware)
	r.TAwareAllS = percentile(aware, r.Nodes, 1)
	if r.TAllS != nil && r.TMinS != nil && *r.TMinS > 0 {
		r.RatioToBound = ptr(*r.TAllS / *r.TMinS)
	}
	r.Series = series(verified, aware, r.Nodes)
}

// series builds the completion curve from the nodes' verify and aware times.
func series(verified, aware []float64, n int) []Point {
	type ev struct {
		t       float64
		isAware bool
	}
	var evs []ev
	for _, t := range verified {
		evs = append(evs, ev{t, false})
	}
	for _, t := range aware {
		evs = append(evs, ev{t, true})
	}
	slices.SortStableFunc(evs, func(a, b ev) int {
		if a.t < b.t {
			return -1
		}
		if a.t > b.t {
			return 1
		}
		return 0
	})
	pts := []Point{{T: 0}}
	var v, a int
	for _, e := range evs {
		if e.isAware {
			a++
		} else {
			v++
		}
		p := Point{T: e.t, Verified: float64(v) / float64(n), Aware: float64(a) / float64(n)}
		if last := &pts[len(pts)-1]; last.T == p.T {
			*last = p
		} else {
			pts = append(pts, p)
		}
	}
	return pts
}

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteJSONFile writes the report to a file.
func (r *Report) WriteJSONFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("simulation: %w", err)
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("simulation: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("simulation: write %s: %w", path, err)
	}
	return nil
}

// Summary is a few lines for people.
func (r *Report) Summary() string {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p, 'f', 2, 64) + "s"
	}
	ratio := "-"
	if r.RatioToBound != nil {
		ratio = strconv.FormatFloat(*r.RatioToBound, 'f', 2, 64)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "nodes %d  completed %d  failed %d  bad installs %d  (hostile %d, churned %d, %s clock, %s, seed %d)\n",
		r.Nodes, r.Completed, r.Failed, r.BadInstalls, r.Hostile, r.Churned, r.Clock, r.Net, r.Seed)
	fmt.Fprintf(&b, "size %s  verified p50 %s  p90 %s  p99 %s  all %s  bound %s  ratio %s  aware p99 %s (%d aware, all %s)\n",
		bytesStr(r.SizeBytes), f(r.TP50S), f(r.TP90S), f(r.TP99S), f(r.TAllS), f(r.TMinS), ratio, f(r.TAwareP99S), r.Aware, f(r.TAwareAllS))
	copies := 0.0
	if r.SizeBytes > 0 {
		copies = float64(r.PublisherUploadBytes) / float64(r.SizeBytes)
	}
	fmt.Fprintf(&b, "upload: publisher %s (%.2f copies)  total %s  wasted %s  refused chunks %d (corrupt served %d)\n",
		bytesStr(r.PublisherUploadBytes), copies, bytesStr(r.TotalUploadBytes), bytesStr(r.WastedBytes), r.RefusedChunks, r.CorruptServed)
	if a := r.Attack; a != nil {
		fmt.Fprintf(&b, "attack: %d stallers (%d answers stalled, %d cut, %d refused)  %d churners (%d dials, %d connected, %d refused, %d dropped)  %d fake announcers (%d announcements, %d accepted, %d evicted, at most %d stored)\n",
			a.Stallers, a.StalledAnswers, a.StalledCut, a.StalledRefused, a.Churners, a.ChurnDials, a.ChurnConnections, a.ChurnRefused, a.ChurnDropped,
			a.FakeAnnouncers, a.FakeAnnouncements, a.FakeAccepted, a.FakeEvicted, a.FakeStoredMax)
	}
	if r.ReusedBytes > 0 {
		fmt.Fprintf(&b, "reused from installed files: %s (not downloaded)\n", bytesStr(r.ReusedBytes))
	}
	perNode := int64(0)
	if r.Nodes > 0 {
		perNode = r.PeakRSSBytes / int64(r.Nodes)
	}
	if r.NAT != nil {
		fmt.Fprintf(&b, "NAT: mix %s, publisher %s; completed per type:", r.NAT.Mix, r.NAT.PublisherNAT)
		for _, typ := range netsim.NATTypes() {
			if n := r.NAT.Nodes[typ.String()]; n > 0 {
				fmt.Fprintf(&b, " %s %d/%d", typ, r.NAT.Completed[typ.String()], n)
			}
		}
		fmt.Fprintf(&b, "; punched %d, punches failed %d, introductions %d", r.NAT.Punched, r.NAT.PunchFailed, r.NAT.Introduced)
		fmt.Fprintf(&b, "; relayed %d (failed %d, %s forwarded, %d reservations); NAT-NAT direct/punched share of chunk bytes %.0f%%",
			r.NAT.Relayed, r.NAT.RelayFailed, bytesStr(r.NAT.RelayBytes), r.NAT.Reservations, 100*r.NAT.NATShare)
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "DHT queries per node from the publish on: %.0f", r.DHTQueriesPerNode)
	for _, k := range slices.Sorted(maps.Keys(r.DHTQueriesByKind)) {
		fmt.Fprintf(&b, " %s %.0f", k, r.DHTQueriesByKind[k])
	}
	b.WriteString("\n")
	if d := r.DHT; d != nil {
		fmt.Fprintf(&b, "DHT: %d nodes (%d junk), %d left, %d joined; puts %d/%d p50 %s p99 %s; lookups %d/%d p50 %s p99 %s; idle %.0fs: %s queries per node-minute (max %s)\n",
			d.Nodes+d.Junk, d.Junk, d.Left, d.Joined, d.PutsOK, d.Puts, f(d.PutP50S), f(d.PutP99S),
			d.LookupsOK, d.Lookups, f(d.LookupP50S), f(d.LookupP99S), d.IdleS, num(d.IdleQueriesPerMin), num(d.IdleQueriesMaxPerMin))
		if len(d.IdleQueriesByKind) > 0 {
			b.WriteString("DHT queries per idle node-minute by kind:")
			for _, k := range slices.Sorted(maps.Keys(d.IdleQueriesByKind)) {
				fmt.Fprintf(&b, " %s %.1f", k, d.IdleQueriesByKind[k])
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "peak RSS %s (%s per node)  wall %.1fs (start-up %.1fs, publish %.1fs)  CPU %s\n",
		bytesStr(r.PeakRSSBytes), bytesStr(perNode), r.WallS, r.StartupS, r.PublishS, f(r.CPUS))
	if r.IdleCPUMsPerNodeS != nil {
		fmt.Fprintf(&b, "idle node: %.2f ms of CPU per second\n", *r.IdleCPUMsPerNodeS)
	}
	return b.String()
}

func num(p *float64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', 1, 64)
}

func bytesStr(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), "B"
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v /= unit
		u = s
	}
	return fmt.Sprintf("%.1f %s", v, u)
}
