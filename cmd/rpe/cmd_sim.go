package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation"
	"github.com/rpe-project/engine/simulation/netsim"
)

func init() {
	register(&command{
		name: "sim",
		args: "[--nodes N] [--size SIZE] [--up RATE] [--publisher-up RATE] [--net netsim|loopback] [--json] [--report FILE] [--plot FILE.svg] ...",
		summary: "Simulate a release spreading to many complete nodes in this process " +
			"(in-memory network, or real UDP on loopback; 127.0.0.0/8 only) and report the figures.",
		run: runSim,
	})
}

// sizeFlag is a size with units ("4MiB").
type sizeFlag struct{ v *int64 }

func (f sizeFlag) String() string {
	if f.v == nil {
		return ""
	}
	return units.FormatSize(*f.v)
}

func (f sizeFlag) Set(s string) error {
	n, err := units.ParseSize(s)
	if err != nil {
		return err
	}
	*f.v = n
	return nil
}

// rateFlag is a rate: "1MiB/s", "8Mbit/s", or a size meaning per second
// ("1MiB"); "0" or "unlimited" means no limit.
type rateFlag struct{ v *int64 }

func (f rateFlag) String() string {
	if f.v == nil || *f.v == 0 {
		return "unlimited"
	}
	return units.FormatRate(*f.v)
}

func (f rateFlag) Set(s string) error {
	if t := strings.TrimSpace(strings.ToLower(s)); t == "0" || t == "unlimited" {
		*f.v = 0
		return nil
	}
	n, err := units.ParseRate(s)
	if err != nil {
		var err2 error
		if n, err2 = units.ParseSize(s); err2 != nil {
			return err
		}
	}
	if n <= 0 {
		return fmt.Errorf("rate %q rounds to 0 bytes per second (use 0 or unlimited for no limit)", s)
	}
	*f.v = n
	return nil
}

func runSim(ctx context.Context, e *env, args []string) error {
	c := commands["sim"]
	fs := newFlags(e, c)
	var s simulation.Scenario
	var chunk int64 = 256 << 10
	s.Size = 4 << 20
	fs.IntVar(&s.Nodes, "nodes", 100, "honest nodes, each a complete engine")
	fs.Var(sizeFlag{&s.Size}, "size", "size of the published file (e.g. 4MiB)")
	fs.Var(sizeFlag{&chunk}, "chunk-size", "chunk size of the release, 16KiB to 16MiB")
	fs.Var(rateFlag{&s.Up}, "up", "each node's upload rate (e.g. 1MiB = 1MiB/s; default unlimited)")
	fs.Var(rateFlag{&s.Down}, "down", "each node's download rate (default unlimited)")
	fs.Float64Var(&s.RateSpread, "rate-spread", 0, "draw each node's rates uniformly within ±this fraction of --up/--down")
	fs.Var(rateFlag{&s.PublisherUp}, "publisher-up", "the publisher's upload rate (default unlimited)")
	fs.DurationVar(&s.Latency, "latency", 10*time.Millisecond, "one-way latency of every access link")
	fs.Float64Var(&s.Loss, "loss", 0, "packet loss probability on every link (0 to 0.5)")
	fs.Float64Var(&s.Churn, "churn", 0, "fraction of nodes stopped mid-download and restarted later")
	fs.Float64Var(&s.Hostile, "hostile", 0, "hostile peers as a fraction of --nodes (corrupt, trickle, liar, stale gossip, staller, churner, fake announcer)")
	fs.IntVar(&s.PublisherLeavesAfter, "publisher-leaves-after", 0, "stop the publisher after it uploaded K full copies (0: stays)")
	fs.Int64Var(&s.Seed, "seed", 1, "seed for topology, rates, hostile set and churn schedule")
	fs.DurationVar(&s.Timeout, "timeout", 10*time.Minute, "give up this long after publishing")
	fs.DurationVar(&s.PollInterval, "poll", 2*time.Second, "each node's mean record poll interval")
	fs.BoolVar(&s.NoPoll, "no-poll", false, "turn record polling off: nodes learn of the release only through the app's mesh and gossip")
	fs.DurationVar(&s.ChunkTimeout, "chunk-timeout", 0, "each node's limit for one chunk request (default the engine's, 20s)")
	fs.DurationVar(&s.FindInterval, "find-interval", 3*time.Second, "each node's peer lookup interval while downloading")
	fs.BoolVar(&s.Upgrade, "upgrade", false, "the fleet upgrades: the DHT and every node hold the record of the version they run before the publish, and --poll defaults to the engine's 5m")
	fs.DurationVar(&s.LatencyMax, "latency-max", 0, "draw each host's one-way latency uniformly from --latency to this (a path takes twice that)")
	fs.IntVar(&s.DHTNodes, "dht-nodes", 0, "DHT nodes without an engine, the bulk of the DHT")
	fs.Float64Var(&s.DHTJunk, "dht-junk", 0, "fraction of --dht-nodes that answer with junk (nodes and peers that do not exist, records that do not verify, garbage)")
	fs.Float64Var(&s.DHTChurn, "dht-churn", 0, "fraction of --dht-nodes replaced every minute by new nodes on new addresses")
	fs.DurationVar(&s.Idle, "idle", 0, "keep every node idle this long before the publish and report the DHT queries an idle node starts per minute")
	fs.IntVar(&s.DHTProbes, "dht-probes", 0, "after the run, this many put-then-lookup trials between random nodes (success and latency in the report)")
	netName := fs.String("net", string(simulation.Netsim), "the network: netsim (in memory: rates, latency, loss) or loopback (real UDP sockets on 127.0.0.1; the engines limit their rates)")
	natMix := fs.String("nat", "", "fractions of nodes behind each NAT type, e.g. `none=0.2,port-restricted=0.7,symmetric=0.1` (types: none, full-cone, address-restricted, port-restricted, symmetric; the rest have none)")
	pubNAT := fs.String("publisher-nat", "none", "the publisher's NAT type")
	reportPath := fs.String("report", "", "also write the report as JSON to `FILE`")
	plotPath := fs.String("plot", "", "write an SVG plot of completion over time to `FILE.svg`")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run (start-up included) to `FILE`, for go tool pprof")
	of := addOutFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	if chunk < release.MinChunkSize || chunk > release.MaxChunkSize {
		return usagef("--chunk-size %s: want 16KiB to 16MiB", units.FormatSize(chunk))
	}
	s.ChunkSize = int(chunk)
	if s.Upgrade {
		pollSet := false
		fs.Visit(func(f *flag.Flag) { pollSet = pollSet || f.Name == "poll" })
		if !pollSet {
			s.PollInterval = 0 // the scenario's default for an upgrade
		}
	}
	if s.NAT, err = simulation.ParseNATMix(*natMix); err != nil {
		return usagef("--nat: %v", err)
	}
	if s.PublisherNAT, err = netsim.ParseNATType(*pubNAT); err != nil {
		return usagef("--publisher-nat: %v", err)
	}
	s.Net = simulation.Net(*netName)
	if s.Net != simulation.Netsim && s.Net != simulation.Loopback {
		return usagef("--net %q: want netsim or loopback", *netName)
	}
	if s.Net == simulation.Loopback {
		var netsimOnly []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "latency" || f.Name == "loss" {
				netsimOnly = append(netsimOnly, "--"+f.Name)
			}
		})
		if len(netsimOnly) > 0 {
			return usagef("%s: only with --net netsim (loopback has the kernel's latency and no loss)", strings.Join(netsimOnly, " and "))
		}
	}
	if *of.verbose {
		s.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if !*of.quiet {
		s.OnProgress = progressLine(e.stderr)
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	rep, err := simulation.Run(ctx, s)
	if perr := stopProfile(); err == nil && perr != nil {
		return perr
	}
	if err != nil {
		if errors.Is(err, simulation.ErrBadScenario) {
			return usageError{err}
		}
		return err
	}
	if *of.json {
		if err := rep.WriteJSON(e.stdout); err != nil {
			return err
		}
	} else {
		fmt.Fprint(e.stdout, rep.Summary())
	}
	// With --json, stdout holds only the report; the file names go to
	// stderr.
	notes := e.stdout
	if *of.json {
		notes = e.stderr
	}
	if *reportPath != "" {
		if err := rep.WriteJSONFile(*reportPath); err != nil {
			return err
		}
		fmt.Fprintf(notes, "report: %s\n", *reportPath)
	}
	if *plotPath != "" {
		if err := simulation.WritePlotFile(*plotPath, &rep); err != nil {
			return err
		}
		fmt.Fprintf(notes, "plot: %s\n", *plotPath)
	}
	if *cpuProfile != "" {
		fmt.Fprintf(notes, "cpu profile: %s (go tool pprof -top %s)\n", *cpuProfile, *cpuProfile)
	}
	if rep.BadInstalls > 0 {
		return fmt.Errorf("%d nodes installed something other than the published bytes", rep.BadInstalls)
	}
	if rep.Completed < rep.Nodes {
		return fmt.Errorf("%d of %d nodes did not complete within %v", rep.Failed, rep.Nodes, s.Timeout)
	}
	return nil
}

// startCPUProfile starts a CPU profile into path ("" for none) and returns
// what stops it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}, nil
}

// progressLine returns a progress callback that rewrites one line on w
// when w is a terminal, and prints a line every few seconds otherwise.
func progressLine(w io.Writer) func(simulation.Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	var last time.Time
	var lastPhase string
	return func(p simulation.Progress) {
		final := p.Phase == "done"
		if !tty && !final && p.Phase == lastPhase && time.Since(last) < 5*time.Second {
			return
		}
		last, lastPhase = time.Now(), p.Phase
		var line string
		switch p.Phase {
		case "starting":
			line = fmt.Sprintf("starting: %d/%d nodes ready", p.Started, p.Total)
		default:
			line = fmt.Sprintf("%s %6.1fs: verified %d/%d, aware %d/%d", p.Phase, p.Elapsed.Seconds(), p.Verified, p.Total, p.Aware, p.Total)
		}
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
			if final {
				fmt.Fprintln(w)
			}
		} else {
			fmt.Fprintln(w, line)
		}
	}
}
