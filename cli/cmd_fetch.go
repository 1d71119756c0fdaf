package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/release"
)

func fetchCommand() *command {
	return &command{
		name:    "fetch",
		args:    "--pubkey KEY --app A --out FILE [--channel C] [--platform P] [--secret FILE] [--wait D] [--bootstrap HOST:PORT,...]",
		summary: "Download and verify the newest release of an app to FILE (written whole or not at all).",
		run:     runFetch,
	}
}

// targetFlags name a release: key, app, channel, platform.
type targetFlags struct {
	pubkey, app, channel, platform *string
}

func addTargetFlags(fs flagSet) targetFlags {
	return targetFlags{
		pubkey:   fs.String("pubkey", "", "the publisher's public `KEY` (52 characters, from rpe init or rpe keys show)"),
		app:      fs.String("app", "", "app `name`"),
		channel:  fs.String("channel", release.DefaultChannel, "release `channel`"),
		platform: fs.String("platform", release.DefaultPlatform(), "`platform`, GOOS-GOARCH"),
	}
}

// check validates the flags; app is required when needApp.
func (t targetFlags) check(needApp bool) error {
	if *t.pubkey == "" {
		return usagef("missing --pubkey (the publisher's 52-character public key, printed by rpe init)")
	}
	if _, err := release.ParsePublicKey(*t.pubkey); err != nil {
		return usagef("--pubkey %q is not a public key: want the 52 characters rpe init or rpe keys show prints", *t.pubkey)
	}
	if needApp && *t.app == "" {
		return usagef("missing --app (the app name given to rpe sign or rpe publish)")
	}
	for _, f := range []struct{ kind, v string }{{"app", *t.app}, {"channel", *t.channel}, {"platform", *t.platform}} {
		if f.v == "" && (f.kind == "app" || !needApp) {
			continue
		}
		if err := release.ValidateName(f.kind, f.v); err != nil {
			return usageError{fmt.Errorf("--%s: %w", f.kind, err)}
		}
	}
	return nil
}

// explain turns the engine's network errors into one line that names the
// problem and the fix.
func explain(err error) error {
	msg := err.Error()
	for _, p := range []string{"fetch: ", "lookup: ", "publish: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	switch {
	case errors.Is(err, engine.ErrUnreachable):
		return fmt.Errorf("%s; check --bootstrap (is a DHT node such as `rpe dht-node` running there?)", msg)
	case errors.Is(err, engine.ErrNoRecord):
		return fmt.Errorf("%s; check --pubkey, or publish first with rpe publish", msg)
	case errors.Is(err, engine.ErrDHTTimedOut):
		return fmt.Errorf("%s; the DHT is slow or churning: try again, or allow more time", msg)
	case errors.Is(err, engine.ErrUnknownApp):
		return fmt.Errorf("%s; check --app, --channel and --platform", msg)
	}
	return errors.New(msg)
}

func runFetch(ctx context.Context, e *env, args []string) error {
	c := e.cmds["fetch"]
	fs := newFlags(e, c)
	tf := addTargetFlags(fs)
	out := fs.String("out", "", "write the release to `FILE`")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	wait := fs.Duration("wait", 0, "keep looking this long while the DHT does not answer or names no such release yet (default: fail at once)")
	secretFile := addSecretFlag(fs)
	nf := addNetFlags(fs)
	of := addOutFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	if err := tf.check(true); err != nil {
		return err
	}
	if *out == "" {
		return usagef("missing --out (the file to write)")
	}
	if err := checkWritableDir(*out, "--out"); err != nil {
		return err
	}
	boot, err := nf.bootstrapList()
	if err != nil {
		return err
	}
	ldht, lquic, err := nf.listenAddrs()
	if err != nil {
		return err
	}
	secret, err := sharedSecret(*secretFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	bar := newByteBar(progressWriter(e, of))
	f, err := engine.Fetch(ctx, engine.FetchConfig{
		PublisherKey: *tf.pubkey, App: *tf.app, Channel: *tf.channel, Platform: *tf.platform,
		Out: *out, StateDir: *nf.stateDir, Bootstrap: boot, ListenDHT: ldht, ListenQUIC: lquic,
		Logger: of.logger(e), OnEvent: bar.event, Wait: *wait, SharedSecret: secret,
	})
	bar.finish()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("no complete release within --timeout %v; run with -v to see why", *timeout)
		}
		return explain(err)
	}
	if *of.json {
		return json.NewEncoder(e.stdout).Encode(map[string]any{
			"app": *tf.app, "channel": *tf.channel, "platform": *tf.platform,
			"version": f.Version, "manifest_id": f.ManifestID.String(), "size": f.Size, "path": f.Path,
		})
	}
	fmt.Fprintf(e.stdout, "fetched %s %s (%d bytes, manifest %s) to %s\n", *tf.app, f.Version, f.Size, f.ManifestID, *out)
	return nil
}

// checkWritableDir fails with one line when the directory that would hold
// path is missing or not writable, before anything else is done.
func checkWritableDir(path, flagName string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: directory %s does not exist; create it or choose another path", flagName, path, dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s: %s is not a directory", flagName, path, dir)
	}
	f, err := os.CreateTemp(dir, ".rpe-probe-*")
	if err != nil {
		return fmt.Errorf("%s %s: cannot write in %s (%v); choose a writable directory or fix its permissions", flagName, path, dir, errors.Unwrap(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}

// progressWriter is where progress goes: stdout, or stderr when stdout
// carries JSON, or nowhere with --quiet.
func progressWriter(e *env, of outFlags) io.Writer {
	if *of.quiet {
		return nil
	}
	if *of.json {
		return e.stderr
	}
	return e.stdout
}

// byteBar shows a download's progress: a bar on a terminal, a line every
// few seconds otherwise.
type byteBar struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	last  time.Time
	shown bool
}

func newByteBar(w io.Writer) *byteBar { return &byteBar{w: w} }

func (b *byteBar) event(ev engine.Event) {
	if b.w == nil {
		return
	}
	switch ev := ev.(type) {
	case engine.ReleaseFound:
		fmt.Fprintf(b.w, "found %s (%d bytes)\n", ev.Version, ev.Size)
	case engine.Reused:
		fmt.Fprintf(b.w, "reused %d of %d chunks (%d bytes) from the file already there\n", ev.Chunks, ev.Total, ev.Bytes)
	case engine.Progress:
		if b.bar == nil && isTerminal(b.w) {
			b.bar = progressbar.NewOptions64(ev.Size,
				progressbar.OptionSetWriter(b.w), progressbar.OptionShowBytes(true),
				progressbar.OptionUseIECUnits(true), progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetDescription("verified"),
				progressbar.OptionShowTotalBytes(true))
		}
		if b.bar != nil {
			b.bar.Describe(fmt.Sprintf("verified, %d peers", ev.Peers))
			b.bar.Set64(ev.Bytes)
			b.shown = true
			return
		}
		if time.Since(b.last) >= 2*time.Second || ev.Verified == ev.Total {
			b.last = time.Now()
			fmt.Fprintf(b.w, "verified %d/%d chunks (%d of %d bytes) from %d peers\n", ev.Verified, ev.Total, ev.Bytes, ev.Size, ev.Peers)
		}
	}
}

func (b *byteBar) finish() {
	if b.bar != nil && b.shown {
		b.bar.Finish()
		fmt.Fprintln(b.w)
	}
}
