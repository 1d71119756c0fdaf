package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/rpe-project/engine/internal/units"
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

// The demo's tuning: loopback answers a DHT query in well under a
// millisecond, so a node resends one after 200ms (measured with 50 nodes on
// two busy cores, 200ms did better than 1s) and looks for more peers every
// second while it downloads.
const (
	demoQueryResendDelay = 200 * time.Millisecond
	demoFindInterval     = time.Second
	demoPollInterval     = 2 * time.Second
)

// runDemo is `rpe sim --net loopback` with the demo's defaults and output:
// the nodes are complete engines on real UDP sockets on 127.0.0.1.
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
	pw := e.stdout
	if *of.json {
		pw = e.stderr
	}
	prog := newDemoProgress(pw, *nodes, size, *of.quiet)
	s := simulation.Scenario{
		Net: simulation.Loopback, Nodes: *nodes, Size: size, ChunkSize: int(chunk),
		Up: up, PublisherUp: pubUp, Timeout: *timeout, Bootstraps: 1,
		QueryResendDelay: demoQueryResendDelay, FindInterval: demoFindInterval, PollInterval: demoPollInterval,
		Seed: time.Now().UnixNano(), Logger: logger, OnProgress: prog.update,
	}
	rep, err := simulation.Run(ctx, s)
	prog.finish()
	if err != nil {
		return err
	}
	if *of.json {
		if err := rep.WriteJSON(e.stdout); err != nil {
			return err
		}
	} else {
		printDemoSummary(e.stdout, &rep)
	}
	switch {
	case ctx.Err() != nil:
		return errors.New("interrupted")
	case rep.BadInstalls > 0:
		return fmt.Errorf("%d nodes installed something other than the published bytes", rep.BadInstalls)
	case rep.Completed < rep.Nodes:
		return fmt.Errorf("%d of %d nodes were not updated within %v; run with -v to see why", rep.Nodes-rep.Completed, rep.Nodes, *timeout)
	}
	return nil
}

func printDemoSummary(w io.Writer, r *simulation.Report) {
	if r.TAllS != nil && r.Completed == r.Nodes {
		fmt.Fprintf(w, "all %d nodes updated in %.1f s (half of them by %.1f s)\n", r.Nodes, *r.TAllS, *r.TP50S)
	} else {
		fmt.Fprintf(w, "%d of %d nodes updated\n", r.Completed, r.Nodes)
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
	if r.CPUS != nil {
		fmt.Fprintf(w, "the whole run (start-up included, %.1f s) took %.1f CPU-seconds\n", r.WallS, *r.CPUS)
	}
	if r.BadInstalls > 0 {
		fmt.Fprintf(w, "%d nodes installed something other than the published bytes\n", r.BadInstalls)
	}
}

// demoProgress shows the demo's progress: a bar on a terminal; otherwise a
// line when the count of verified nodes changes (at most every two seconds)
// and a last one at the end; nothing with --quiet.
type demoProgress struct {
	w     io.Writer
	quiet bool
	bar   *progressbar.ProgressBar
	size  int64
	nodes int
	tty   bool

	started  bool
	last     time.Time
	lastSeen int    // verified count of the last line printed
	lastLine string // the last line printed, never printed twice
}

func newDemoProgress(w io.Writer, nodes int, size int64, quiet bool) *demoProgress {
	return &demoProgress{w: w, quiet: quiet, size: size, nodes: nodes, tty: !quiet && isTerminal(w), lastSeen: -1}
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

// update is the simulation's progress callback.
func (p *demoProgress) update(pr simulation.Progress) {
	if p.quiet {
		return
	}
	switch pr.Phase {
	case "starting":
		if !p.started {
			p.started = true
			fmt.Fprintf(p.w, "starting %d nodes on 127.0.0.1\n", p.nodes)
		}
		return
	case "publishing":
		fmt.Fprintf(p.w, "publishing %s to a DHT of %d nodes\n", units.FormatSize(p.size), p.nodes)
		return
	}
	desc := fmt.Sprintf("received %s in all, %s of it from the publisher (%.2f× the file)",
		units.FormatSize(pr.Moved), units.FormatSize(pr.PublisherSent), float64(pr.PublisherSent)/float64(max(p.size, 1)))
	if p.tty {
		if p.bar == nil {
			p.newBar()
		}
		p.bar.Describe(desc)
		p.bar.Set(pr.Verified)
		return
	}
	final := pr.Phase == "done"
	// The line for every node verified is the final one, printed once.
	if !final && (pr.Verified == p.lastSeen || pr.Verified == p.nodes || time.Since(p.last) < 2*time.Second) {
		return
	}
	line := fmt.Sprintf("%5.1fs  verified %d/%d nodes, %s", pr.Elapsed.Seconds(), pr.Verified, p.nodes, desc)
	if line == p.lastLine {
		return
	}
	p.last, p.lastSeen, p.lastLine = time.Now(), pr.Verified, line
	fmt.Fprintln(p.w, line)
}

func (p *demoProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
