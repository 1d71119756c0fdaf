package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// Errors of Lookup and Fetch, for errors.Is.
var (
	// ErrUnreachable means no DHT node answered at all in time.
	ErrUnreachable = errors.New("no DHT node answered")
	// ErrNoRecord means DHT nodes answered but none holds a record signed
	// by the key.
	ErrNoRecord = errors.New("no record signed by this key was found in the DHT")
	// ErrDHTTimedOut means the time ran out while DHT nodes were still
	// answering: the DHT is slow or churning, and trying again may succeed.
	ErrDHTTimedOut = errors.New("the time ran out while DHT nodes were still answering")
	// ErrUnknownApp means the record names no release for the app, channel
	// and platform asked for.
	ErrUnknownApp = errors.New("the record names no release for this app")
)

// LookupConfig configures Lookup.
type LookupConfig struct {
	// PublisherKey is the publisher's public key in z-base-32; required.
	PublisherKey string
	// CountPeers looks up, for every entry, how many peers announce it.
	CountPeers bool
	// Timeout bounds joining the DHT and reading the record; default 15s.
	Timeout time.Duration
	// PeersTimeout bounds each entry's peer lookup; default 3s.
	PeersTimeout time.Duration
	// SharedSecret, in z-base-32, lists the private swarm's sealed entries
	// (and counts its peers) instead of the public ones.
	SharedSecret string
	// Bootstrap, listen addresses and Logger are as in Config.
	Bootstrap             []string
	ListenDHT, ListenQUIC string
	Logger                *slog.Logger
}

// Listing is a publisher's current record and what it names.
type Listing struct {
	Packet  *release.SignedPacket
	Entries []ListedEntry
}

// ListedEntry is one release named by a record.
type ListedEntry struct {
	release.Entry
	// Peers is how many peers announce the release (with CountPeers), or -1.
	Peers int
}

// Lookup joins the DHT, reads the publisher's signed record and lists the
// releases it names, sorted by app, channel and platform.
func Lookup(ctx context.Context, lc LookupConfig) (*Listing, error) {
	pub, err := release.ParsePublicKey(lc.PublisherKey)
	if err != nil {
		return nil, fmt.Errorf("lookup: public key: %w", err)
	}
	if lc.Timeout == 0 {
		lc.Timeout = 15 * time.Second
	}
	if lc.PeersTimeout == 0 {
		lc.PeersTimeout = 3 * time.Second
	}
	h := hooks.From(ctx)
	node, err := network.New(ctx, network.Config{
		DHTConn: h.DHTConn, QUICConn: h.QUICConn,
		ListenDHT: lc.ListenDHT, ListenQUIC: lc.ListenQUIC, Bootstrap: lc.Bootstrap,
		Logger: lc.Logger, QueryResendDelay: h.QueryResendDelay, NoMaintainer: true,
	})
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	defer node.Close()
	pkt, err := joinAndGet(ctx, node, pub, lc.Bootstrap, lc.Timeout)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	priv, err := privateSwarm(lc.SharedSecret)
	if err != nil {
		return nil, fmt.Errorf("lookup: SharedSecret: %w", err)
	}
	entries, err := listEntries(pkt, priv)
	if err != nil {
		return nil, fmt.Errorf("lookup: record: %w", err)
	}
	slices.SortFunc(entries, func(a, b release.Entry) int { return strings.Compare(a.Target().String(), b.Target().String()) })
	l := &Listing{Packet: pkt, Entries: make([]ListedEntry, len(entries))}
	var wg sync.WaitGroup
	for i, e := range entries {
		l.Entries[i] = ListedEntry{Entry: e, Peers: -1}
		if lc.CountPeers {
			wg.Go(func() { l.Entries[i].Peers = countPeers(ctx, node, swarmIDOf(priv, e.ManifestID), lc.PeersTimeout) })
		}
	}
	wg.Wait()
	return l, nil
}

func countPeers(ctx context.Context, node *network.Node, s release.SwarmID, d time.Duration) int {
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ch, err := node.FindPeers(pctx, s)
	if err != nil {
		return 0
	}
	n := 0
	for range ch {
		n++
	}
	return n
}

// joinAndGet joins the DHT (in the background: the lookup does not wait for
// it) and reads pub's record, telling apart a DHT that does not answer, a
// record that is not there, and time running out while nodes answer.
func joinAndGet(ctx context.Context, node *network.Node, pub release.PublicKey, boot []string, d time.Duration) (*release.SignedPacket, error) {
	jctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	node.Join()
	pkt, _, err := node.GetRecord(jctx, pub)
	switch {
	case err == nil:
		return pkt, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, network.ErrNoAnswer), errors.Is(err, network.ErrNoNodes):
		where := "the public Mainline routers"
		if len(boot) > 0 {
			where = strings.Join(boot, ", ")
		}
		return nil, fmt.Errorf("%w at %s within %v", ErrUnreachable, where, d)
	case errors.Is(err, network.ErrNotFound):
		return nil, fmt.Errorf("%w (key %s)", ErrNoRecord, pub)
	case errors.Is(err, network.ErrTimedOut):
		return nil, fmt.Errorf("%w (key %s, looked for %v)", ErrDHTTimedOut, pub, d)
	}
	return nil, err
}

// FetchConfig configures Fetch. PublisherKey, App and Out are required.
// When Out already holds an earlier release, the chunks the new one shares
// with it are copied from it rather than downloaded (a Reused event says
// how many).
type FetchConfig struct {
	PublisherKey string
	// App names the program; Channel defaults to "stable", Platform to
	// GOOS-GOARCH of this build.
	App, Channel, Platform string
	// Out is the file to write. It is written whole or not at all: the
	// release goes to a temporary file beside it, is checked once more
	// against the manifest and renamed over it.
	Out string
	// StateDir keeps the download (so an interrupted fetch can resume when
	// the same directory is given again); default a temporary directory
	// removed when Fetch returns.
	StateDir string
	// LookupTimeout bounds joining the DHT and reading the record; default
	// 15s.
	LookupTimeout time.Duration
	// Wait is how long to keep trying while the DHT does not answer, holds
	// no record, or the record names no release for the app (a release
	// being published right now); default 0, fail at once.
	Wait time.Duration
	// OnEvent, when set, receives the node's events (Progress among them)
	// from one goroutine.
	OnEvent func(Event)
	// SharedSecret, in z-base-32, fetches from the private swarm of that
	// secret (see Config.SharedSecret); empty fetches a public release.
	SharedSecret string
	// Bootstrap, listen addresses and Logger are as in Config.
	Bootstrap             []string
	ListenDHT, ListenQUIC string
	Logger                *slog.Logger
}

// Fetched is the release Fetch wrote.
type Fetched struct {
	Version    string
	ManifestID release.ManifestID
	Size       int64
	Path       string
}

// fetchFloor is the version a fetching node claims to run: below every
// release, so the newest one is always fetched.
const fetchFloor = "0.0.0-0"

// Fetch downloads the newest release of an app that the publisher's record
// names, verifies it like a node does (manifest signature and target, every
// chunk, the whole file) and writes it to Out, without installing or running
// anything. It fails early, writing nothing, when Out's directory is not
// writable, the DHT does not answer, or the record names no such app.
func Fetch(ctx context.Context, fc FetchConfig) (*Fetched, error) {
	if fc.Out == "" {
		return nil, errors.New("fetch: no output file")
	}
	if fc.LookupTimeout == 0 {
		fc.LookupTimeout = 15 * time.Second
	}
	// The temporary output first: an unwritable directory fails at once.
	out, err := filepath.Abs(fc.Out)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("fetch: %s exists and is not a regular file", fc.Out)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".rpe-fetch-*")
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", cannotWrite(fc.Out, err))
	}
	tmpName := tmp.Name()
	renamed := false
	defer func() {
		tmp.Close()
		if !renamed {
			os.Remove(tmpName)
		}
	}()

	// Without a state dir of the caller's, the state goes beside Out, on
	// the same file system: the verified staging file then becomes Out by
	// a rename, so the release is written once (no second copy to write,
	// read back and hash again).
	stateDir := fc.StateDir
	if stateDir == "" {
		if stateDir, err = os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".rpe-fetch-*"); err != nil {
			return nil, fmt.Errorf("fetch: %w", cannotWrite(fc.Out, err))
		}
		defer os.RemoveAll(stateDir)
	} else if err := os.MkdirAll(stateDir, 0o755); err != nil {
		// A state dir given for the first time is made, as Start does.
		return nil, fmt.Errorf("fetch: state dir %s: %w", stateDir, unwrapPath(err))
	}
	// The installer swaps this placeholder; Out is written here, by copy.
	placeholder := filepath.Join(stateDir, "fetched")
	if err := os.WriteFile(placeholder, nil, 0o644); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	s, err := populate(ctx, Config{
		PublisherKey: fc.PublisherKey, App: fc.App, Channel: fc.Channel, Platform: fc.Platform,
		CurrentVersion: fetchFloor, Target: placeholder, StateDir: stateDir, Apply: ApplyOnRestart,
		Exec:      func(string, []string, []string) error { return nil },
		Bootstrap: fc.Bootstrap, ListenDHT: fc.ListenDHT, ListenQUIC: fc.ListenQUIC,
		Logger: fc.Logger, PollInterval: 10 * time.Second, SharedSecret: fc.SharedSecret,
	})
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	// An earlier copy of the release at Out lends its chunks.
	s.reuseFrom = []string{out}

	node, err := network.New(ctx, network.Config{
		DHTConn: s.hooks.DHTConn, QUICConn: s.hooks.QUICConn,
		ListenDHT: s.ListenDHT, ListenQUIC: s.ListenQUIC, Bootstrap: s.Bootstrap,
		Logger: s.Logger, QueryResendDelay: s.hooks.QueryResendDelay,
	})
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	pkt, entry, err := findEntry(ctx, node, s, fc)
	if err != nil {
		node.Close()
		return nil, fmt.Errorf("fetch: %w", err)
	}
	// The resolver starts from the record just read, without a second lookup.
	if err := state.SaveRecord(stateDir, pkt); err != nil {
		node.Close()
		return nil, fmt.Errorf("fetch: %w", err)
	}
	e, err := startNodeOn(ctx, s, node)
	if err != nil {
		node.Close()
		return nil, fmt.Errorf("fetch: %w", err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Stop(sctx)
		for range e.Events() {
		}
	}
	var staged string
wait:
	for {
		select {
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("fetch %s %s: %w", fc.App, entry.Version, ctx.Err())
		case ev := <-e.Events():
			if fc.OnEvent != nil {
				fc.OnEvent(ev)
			}
			switch ev := ev.(type) {
			case Verified:
				if ev.ManifestID == entry.ManifestID {
					staged = ev.Path
					break wait
				}
			case Refused:
				if ev.What == RefusedManifest {
					stop()
					return nil, fmt.Errorf("fetch %s %s: manifest refused: %w", fc.App, entry.Version, ev.Reason)
				}
			case Failed:
				if ev.Stage == StageDownloader {
					stop()
					return nil, fmt.Errorf("fetch %s %s: %w", fc.App, entry.Version, ev.Err)
				}
			}
		}
	}
	rel := e.store.Get(entry.ManifestID)
	if rel == nil {
		stop()
		return nil, fmt.Errorf("fetch %s %s: verified release vanished from the store", fc.App, entry.Version)
	}
	man := rel.Manifest().Manifest
	if fc.StateDir == "" {
		// The state dir is ours and goes away: take the staging file, which
		// the verifier checked whole, once the node has let go of it.
		stop()
		err = takeVerified(staged, out, man)
	} else {
		err = copyVerified(tmp, staged, man)
		stop()
		if err == nil {
			err = tmp.Close()
		}
		if err == nil {
			err = os.Rename(tmpName, out)
		}
		renamed = err == nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: %w", fc.App, entry.Version, err)
	}
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		d.Sync()
		d.Close()
	}
	return &Fetched{Version: man.Version.String(), ManifestID: entry.ManifestID, Size: man.Size, Path: out}, nil
}

// cannotWrite says that the file asked for cannot be written in its
// directory, naming it (not the temporary file that failed) and the fix.
func cannotWrite(asked string, err error) error {
	return fmt.Errorf("cannot write %s: %w; make its directory %s writable, or write elsewhere", asked, unwrapPath(err), filepath.Dir(asked))
}

// unwrapPath drops the path an *os.PathError names (a temporary file's) and
// keeps its cause.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// findEntry reads the record and the entry for the target, retrying for
// fc.Wait.
func findEntry(ctx context.Context, node *network.Node, s *settings, fc FetchConfig) (*release.SignedPacket, release.Entry, error) {
	until := time.Now().Add(fc.Wait)
	for {
		pkt, err := joinAndGet(ctx, node, s.pub, s.Bootstrap, fc.LookupTimeout)
		if err == nil {
			e, lerr := lookupEntry(pkt, s)
			if lerr == nil {
				return pkt, e, nil
			}
			err = lerr
			if errors.Is(lerr, release.ErrNoEntry) && !errors.Is(lerr, release.ErrNeedSecret) {
				err = unknownApp(pkt, s.target)
			}
		}
		retry := errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNoRecord) || errors.Is(err, ErrUnknownApp) || errors.Is(err, ErrDHTTimedOut)
		if !retry || time.Now().After(until) {
			return nil, release.Entry{}, err
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, release.Entry{}, err
		case <-t.C:
		}
	}
}

// takeVerified makes the verified staging file out: executable, synced,
// then renamed into place. Its bytes were checked as they arrived (every
// chunk, and the whole file before the Verified event); nothing else
// writes to it.
func takeVerified(staged, out string, m *release.Manifest) error {
	f, err := os.OpenFile(staged, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != m.Size {
		err = fmt.Errorf("staged file has %d bytes, the manifest %d", fi.Size(), m.Size)
	}
	if err == nil {
		err = f.Chmod(0o755)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(staged, out)
}

// copyVerified copies the staged release into f, syncs it, and checks the
// copy against the manifest once more (every chunk and the whole file).
func copyVerified(f *os.File, staged string, m *release.Manifest) error {
	src, err := os.Open(staged)
	if err != nil {
		return err
	}
	defer src.Close()
	n, err := io.Copy(f, io.LimitReader(src, m.Size+1))
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if n != m.Size {
		return fmt.Errorf("copy: staged file has %d bytes, the manifest %d", n, m.Size)
	}
	if err := f.Chmod(0o755); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := release.VerifyFile(f, m); err != nil {
		return fmt.Errorf("check written copy: %w", err)
	}
	return nil
}

// unknownApp says which releases a record does name.
func unknownApp(p *release.SignedPacket, t release.Target) error {
	entries, _ := p.Entries()
	var names []string
	for _, e := range entries {
		names = append(names, e.Target().String())
	}
	if len(names) == 0 {
		return fmt.Errorf("%w %s: the record names none", ErrUnknownApp, t)
	}
	return fmt.Errorf("%w %s; it names %s", ErrUnknownApp, t, strings.Join(names, ", "))
}
