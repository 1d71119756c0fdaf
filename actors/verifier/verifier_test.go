package verifier

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

const chunk = release.MinChunkSize

var (
	created = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	now     = created.Add(time.Hour)
	target  = release.Target{App: "app", Channel: "stable", Platform: "linux-amd64"}
	peer    = wire.NodeID{0xaa, 0xbb}
)

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

var (
	publisher = testKey(1)
	stranger  = testKey(2)
)

func mustVersion(t testing.TB, s string) *semver.Version {
	t.Helper()
	v, err := release.ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func artifact(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// build returns a manifest for data built with opts, filling the defaults
// the tests share, and signed by sk.
func build(t testing.TB, sk ed25519.PrivateKey, data []byte, opts release.BuildOptions) *release.SignedManifest {
	t.Helper()
	if opts.App == "" {
		opts.App = target.App
	}
	if opts.Channel == "" {
		opts.Channel = target.Channel
	}
	if opts.Platform == "" {
		opts.Platform = target.Platform
	}
	if opts.Version == "" {
		opts.Version = "1.1.0"
	}
	if opts.Created.IsZero() {
		opts.Created = created
	}
	opts.ChunkSize = chunk
	m, err := release.BuildManifest(bytes.NewReader(data), opts)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := release.SignManifest(m, sk)
	if err != nil {
		t.Fatal(err)
	}
	return sm
}

// entryOf is the record entry that names sm.
func entryOf(sm *release.SignedManifest) release.Entry {
	m := sm.Manifest
	return release.Entry{App: m.App, Channel: m.Channel, Platform: m.Platform, Version: m.Version, ManifestID: sm.ID, Size: m.Size}
}

// stage is one verifier actor in its own actor system.
type stage struct {
	t     *testing.T
	sys   *actor.ActorSystem
	pid   *actor.PID
	floor atomic.Pointer[semver.Version]
}

func newStage(t *testing.T, mutate func(*Config)) *stage {
	t.Helper()
	s := &stage{t: t}
	s.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	cfg := Config{
		Policy: Policy{
			PublisherKey: release.PublicKeyOf(publisher),
			Target:       target,
			Current:      mustVersion(t, "1.0.0"),
			Floor:        func() (*semver.Version, error) { return s.floor.Load(), nil },
		},
		Now: func() time.Time { return now },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s.pid = s.spawn(cfg)
	t.Cleanup(func() {
		if err := s.sys.Root.StopFuture(s.pid).Wait(); err != nil {
			t.Errorf("stop verifier: %v", err)
		}
		s.sys.Shutdown()
	})
	return s
}

func (s *stage) spawn(cfg Config) *actor.PID { return s.sys.Root.Spawn(Props(cfg)) }

// ask sends msg with RequestFuture and returns the reply.
func (s *stage) ask(msg any) any {
	s.t.Helper()
	return s.askPID(s.pid, msg)
}

func (s *stage) askPID(pid *actor.PID, msg any) any {
	s.t.Helper()
	res, err := s.sys.Root.RequestFuture(pid, msg, 10*time.Second).Result()
	if err != nil {
		s.t.Fatalf("request %T: %v", msg, err)
	}
	return res
}

func TestCheckManifestAccepts(t *testing.T) {
	s := newStage(t, nil)
	sm := build(t, publisher, artifact(3*chunk, 1), release.BuildOptions{})
	res := s.ask(&CheckManifest{Raw: sm.Raw, Entry: entryOf(sm), Peer: peer})
	acc, ok := res.(*ManifestAccepted)
	if !ok {
		t.Fatalf("reply %#v, want *ManifestAccepted", res)
	}
	if acc.Manifest.ID != sm.ID || acc.Peer != peer || !bytes.Equal(acc.Manifest.Raw, sm.Raw) {
		t.Fatalf("accepted %s from %s, want %s from %s", acc.Manifest.ID.Short(), acc.Peer, sm.ID.Short(), peer)
	}
	// A record entry may leave version and size out; the ID still binds.
	e := entryOf(sm)
	e.Version, e.Size = nil, 0
	if res := s.ask(&CheckManifest{Raw: sm.Raw, Entry: e}); !isAccepted(res) {
		t.Fatalf("entry without version and size: %#v", res)
	}
	// The floor itself may be installed (a re-install after a failed swap).
	s.floor.Store(mustVersion(t, "1.1.0"))
	if res := s.ask(&CheckManifest{Raw: sm.Raw, Entry: entryOf(sm)}); !isAccepted(res) {
		t.Fatalf("version equal to the floor: %#v", res)
	}
}

func isAccepted(res any) bool { _, ok := res.(*ManifestAccepted); return ok }

func TestCheckManifestRejects(t *testing.T) {
	data := artifact(3*chunk+5, 1)
	good := build(t, publisher, data, release.BuildOptions{})
	flipped := func(sm *release.SignedManifest, i int) []byte {
		b := append([]byte(nil), sm.Raw...)
		b[i] ^= 1
		return b
	}
	// resign gives raw bytes and an entry naming exactly them, so the only
	// fault is the one under test.
	type input struct {
		raw   []byte
		entry release.Entry
	}
	named := func(sm *release.SignedManifest) input { return input{sm.Raw, entryOf(sm)} }
	rawNamed := func(raw []byte, like release.Entry) input {
		like.ManifestID = sha256.Sum256(raw)
		return input{raw, like}
	}
	withEntry := func(f func(*release.Entry)) input {
		e := entryOf(good)
		f(&e)
		return input{good.Raw, e}
	}
	cases := []struct {
		name  string
		in    input
		floor string
		limit int64
		want  []error // all must match
		// wantAny: at least one must match
		wantAny []error
	}{
		{name: "signature flipped", in: rawNamed(flipped(good, len(good.Raw)-1), entryOf(good)), want: []error{release.ErrBadSignature}},
		{name: "body flipped", in: rawNamed(flipped(good, len(good.Raw)-65), entryOf(good)), want: []error{release.ErrBadSignature}},
		{name: "other key", in: named(build(t, stranger, data, release.BuildOptions{})), want: []error{release.ErrWrongKey, release.ErrBadSignature}},
		{name: "garbage", in: rawNamed([]byte("not a manifest"), entryOf(good)), want: []error{release.ErrMalformed}},
		{name: "empty", in: rawNamed(nil, entryOf(good)), want: []error{release.ErrMalformed}},
		{name: "truncated", in: rawNamed(good.Raw[:len(good.Raw)-10], entryOf(good)), want: []error{release.ErrMalformed}},
		{name: "other app", in: named(build(t, publisher, data, release.BuildOptions{App: "other"})), want: []error{release.ErrWrongTarget}},
		{name: "other channel", in: named(build(t, publisher, data, release.BuildOptions{Channel: "beta"})), want: []error{release.ErrWrongTarget}},
		{name: "other platform", in: named(build(t, publisher, data, release.BuildOptions{Platform: "windows-amd64"})), want: []error{release.ErrWrongTarget}},
		{name: "expired", in: named(build(t, publisher, data, release.BuildOptions{Created: now.Add(-48 * time.Hour), Expires: now.Add(-time.Second)})), want: []error{release.ErrExpired}},
		{name: "expires now", in: named(build(t, publisher, data, release.BuildOptions{Created: now.Add(-48 * time.Hour), Expires: now})), want: []error{release.ErrExpired}},
		{name: "not yet valid", in: named(build(t, publisher, data, release.BuildOptions{Created: now.Add(time.Hour)})), want: []error{release.ErrNotYetValid}},
		{name: "same as running", in: named(build(t, publisher, data, release.BuildOptions{Version: "1.0.0"})), want: []error{ErrNotNewer}},
		{name: "older than running", in: named(build(t, publisher, data, release.BuildOptions{Version: "0.9.9"})), want: []error{ErrNotNewer}},
		{name: "pre-release of running", in: named(build(t, publisher, data, release.BuildOptions{Version: "1.0.0-rc.1"})), want: []error{ErrNotNewer}},
		{name: "below floor", in: named(good), floor: "1.2.0", want: []error{ErrBelowFloor}},
		{name: "below floor pre-release", in: named(build(t, publisher, data, release.BuildOptions{Version: "1.2.0-rc.1"})), floor: "1.2.0", want: []error{ErrBelowFloor}},
		{name: "entry names another ID", in: withEntry(func(e *release.Entry) { e.ManifestID[0] ^= 1 }), want: []error{ErrEntryMismatch}},
		{name: "entry names another version", in: withEntry(func(e *release.Entry) { e.Version = mustVersion(t, "1.1.1") }), want: []error{ErrEntryMismatch}},
		{name: "entry names another size", in: withEntry(func(e *release.Entry) { e.Size++ }), want: []error{ErrEntryMismatch}},
		{name: "above size limit", in: named(good), limit: good.Manifest.Size - 1, wantAny: []error{release.ErrSizeLimit, release.ErrMalformed}},
		{name: "far above size limit", in: named(good), limit: 1, wantAny: []error{release.ErrSizeLimit, release.ErrMalformed}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStage(t, func(cfg *Config) { cfg.Policy.Limits.MaxSize = c.limit })
			if c.floor != "" {
				s.floor.Store(mustVersion(t, c.floor))
			}
			res := s.ask(&CheckManifest{Raw: c.in.raw, Entry: c.in.entry, Peer: peer})
			rej, ok := res.(*ManifestRejected)
			if !ok {
				t.Fatalf("reply %#v, want *ManifestRejected", res)
			}
			if rej.Peer != peer || rej.Entry.ManifestID != c.in.entry.ManifestID {
				t.Errorf("rejection names peer %s and entry %s", rej.Peer, rej.Entry.ManifestID.Short())
			}
			for _, w := range c.want {
				if !errors.Is(rej.Err, w) {
					t.Errorf("error %v does not match %v", rej.Err, w)
				}
			}
			if len(c.wantAny) > 0 && !slices.ContainsFunc(c.wantAny, func(w error) bool { return errors.Is(rej.Err, w) }) {
				t.Errorf("error %v matches none of %v", rej.Err, c.wantAny)
			}
		})
	}
}

// staged is a release and a staging file holding its bytes.
type staged struct {
	sm   *release.SignedManifest
	data []byte
	path string
}

func newStaged(t *testing.T, n int, seed byte) staged {
	t.Helper()
	data := artifact(n, seed)
	sm := build(t, publisher, data, release.BuildOptions{})
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return staged{sm: sm, data: data, path: path}
}

func (st staged) chunk(i int) []byte {
	m := st.sm.Manifest
	off := m.ChunkOffset(i)
	return append([]byte(nil), st.data[off:off+int64(m.ChunkLen(i))]...)
}

func (st staged) check(i int) *CheckChunk {
	return &CheckChunk{Manifest: st.sm, StagingPath: st.path, Index: i, Data: st.chunk(i), Peer: peer}
}

func (st staged) finish() *Finish { return &Finish{Manifest: st.sm, StagingPath: st.path} }

// overwrite changes one byte of the staging file at off.
func (st staged) overwrite(t *testing.T, off int64) {
	t.Helper()
	f, err := os.OpenFile(st.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{st.data[off] ^ 0x80}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func (s *stage) mustVerify(st staged, i int) {
	s.t.Helper()
	res := s.ask(st.check(i))
	v, ok := res.(*ChunkVerified)
	if !ok {
		s.t.Fatalf("chunk %d: reply %#v, want *ChunkVerified", i, res)
	}
	if v.ID != st.sm.ID || v.Index != i || v.Peer != peer || v.Size != st.sm.Manifest.ChunkLen(i) {
		s.t.Fatalf("chunk %d: verified %+v", i, v)
	}
}

func (s *stage) mustFinish(st staged) {
	s.t.Helper()
	res := s.ask(st.finish())
	fv, ok := res.(*FileVerified)
	if !ok {
		s.t.Fatalf("Finish: reply %#v, want *FileVerified", res)
	}
	if fv.Manifest.ID != st.sm.ID || fv.StagingPath != st.path {
		s.t.Fatalf("Finish: verified %s at %s", fv.Manifest.ID.Short(), fv.StagingPath)
	}
}

func (s *stage) mustReject(st staged, want ...error) *FileRejected {
	s.t.Helper()
	res := s.ask(st.finish())
	fr, ok := res.(*FileRejected)
	if !ok {
		s.t.Fatalf("Finish: reply %#v, want *FileRejected", res)
	}
	if fr.Manifest.ID != st.sm.ID {
		s.t.Fatalf("Finish rejected %s, want %s", fr.Manifest.ID.Short(), st.sm.ID.Short())
	}
	for _, w := range want {
		if !errors.Is(fr.Err, w) {
			s.t.Errorf("Finish: error %v does not match %v", fr.Err, w)
		}
	}
	return fr
}

func TestCheckChunk(t *testing.T) {
	s := newStage(t, nil)
	st := newStaged(t, 4*chunk+100, 2)
	n := st.sm.Manifest.NumChunks()
	for i := range n {
		s.mustVerify(st, i)
	}
	rejects := []struct {
		name  string
		msg   *CheckChunk
		index int
		want  error
	}{
		{"first byte flipped", func() *CheckChunk { m := st.check(0); m.Data[0] ^= 1; return m }(), 0, release.ErrChunkMismatch},
		{"last byte of last chunk flipped", func() *CheckChunk { m := st.check(n - 1); m.Data[len(m.Data)-1] ^= 1; return m }(), n - 1, release.ErrChunkMismatch},
		{"middle chunk flipped", func() *CheckChunk { m := st.check(2); m.Data[chunk/2] ^= 0x40; return m }(), 2, release.ErrChunkMismatch},
		{"short", func() *CheckChunk { m := st.check(1); m.Data = m.Data[:chunk-1]; return m }(), 1, release.ErrChunkMismatch},
		{"long", func() *CheckChunk { m := st.check(n - 1); m.Data = append(m.Data, 0); return m }(), n - 1, release.ErrChunkMismatch},
		{"another chunk's bytes", func() *CheckChunk { m := st.check(1); m.Data = st.chunk(2); return m }(), 1, release.ErrChunkMismatch},
		{"index past the end", func() *CheckChunk { m := st.check(0); m.Index = n; return m }(), n, release.ErrNoSuchChunk},
		{"negative index", func() *CheckChunk { m := st.check(0); m.Index = -1; return m }(), -1, release.ErrNoSuchChunk},
	}
	for _, c := range rejects {
		t.Run(c.name, func(t *testing.T) {
			res := s.ask(c.msg)
			rej, ok := res.(*ChunkRejected)
			if !ok {
				t.Fatalf("reply %#v, want *ChunkRejected", res)
			}
			if rej.ID != st.sm.ID || rej.Index != c.index || rej.Peer != peer || rej.Size != len(c.msg.Data) {
				t.Errorf("rejected %+v; want index %d, peer %s, size %d", rej, c.index, peer, len(c.msg.Data))
			}
			if !errors.Is(rej.Err, c.want) {
				t.Errorf("error %v does not match %v", rej.Err, c.want)
			}
			var ce *release.ChunkError
			if !errors.As(rej.Err, &ce) || ce.Index != c.index {
				t.Errorf("error %v does not name chunk %d", rej.Err, c.index)
			}
		})
	}
	// The rejections left the set of checked chunks alone.
	s.mustFinish(st)
}

func TestFinishOrders(t *testing.T) {
	orders := map[string]func(n int) []int{
		"in order": func(n int) []int {
			o := make([]int, n)
			for i := range o {
				o[i] = i
			}
			return o
		},
		"reversed": func(n int) []int {
			o := make([]int, n)
			for i := range o {
				o[i] = n - 1 - i
			}
			return o
		},
		"shuffled": func(n int) []int { return rand.New(rand.NewPCG(1, 2)).Perm(n) },
		"gap then fill": func(n int) []int {
			// 0, then everything but 1, then 1: the whole tail is read back.
			o := []int{0}
			for i := 2; i < n; i++ {
				o = append(o, i)
			}
			return append(o, 1)
		},
		"duplicates": func(n int) []int {
			o := []int{2, 2, 0, 0, 1, 2}
			for i := 3; i < n; i++ {
				o = append(o, i, i)
			}
			return o
		},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			s := newStage(t, nil)
			st := newStaged(t, 7*chunk+333, 3)
			for _, i := range order(st.sm.Manifest.NumChunks()) {
				s.mustVerify(st, i)
			}
			s.mustFinish(st)
		})
	}
}

// TestFinishAfterRejectedChunk: a bad copy of a chunk was written and
// rejected, then a good copy replaced it; chunks after it were verified
// earlier and are read back when the prefix reaches them.
func TestFinishAfterRejectedChunk(t *testing.T) {
	s := newStage(t, nil)
	st := newStaged(t, 5*chunk, 4)
	good1 := st.check(1)
	bad1 := st.check(1)
	bad1.Data[10] ^= 1
	st.overwrite(t, chunk+10) // the bad copy is on disk
	s.mustVerify(st, 3)
	s.mustVerify(st, 2)
	if res := s.ask(bad1); !isRejected(res) {
		t.Fatalf("bad chunk: %#v", res)
	}
	s.mustVerify(st, 0)
	if err := os.WriteFile(st.path, st.data, 0o644); err != nil { // the good copy lands
		t.Fatal(err)
	}
	if res := s.ask(good1); !isVerified(res) {
		t.Fatalf("good chunk: %#v", res)
	}
	s.mustVerify(st, 4)
	s.mustFinish(st)
}

func isRejected(res any) bool { _, ok := res.(*ChunkRejected); return ok }
func isVerified(res any) bool { _, ok := res.(*ChunkVerified); return ok }

// TestFinishReadsBackUnseenChunks: Finish hashes again only the chunks this
// verifier did not check itself (as after a resumed download), and catches
// a change to one of them; the chunks it checked from memory are not read
// again (that is the installer's final check).
func TestFinishReadsBackUnseenChunks(t *testing.T) {
	cases := map[string]struct {
		verify []int // chunks checked by this verifier
		change int64 // staging file offset changed afterwards, -1 for none
		ok     bool
	}{
		"none seen, file intact":   {verify: nil, change: -1, ok: true},
		"none seen, last byte":     {verify: nil, change: 5*chunk + 99, ok: false},
		"some seen, unseen change": {verify: []int{0, 2, 3}, change: chunk + 7, ok: false},
		"some seen, tail change":   {verify: []int{0, 1, 2}, change: 4 * chunk, ok: false},
		"some seen, intact":        {verify: []int{5, 1, 3}, change: -1, ok: true},
		"all seen, change after":   {verify: []int{5, 4, 3, 2, 1, 0}, change: 3 * chunk, ok: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStage(t, nil)
			st := newStaged(t, 5*chunk+100, 5)
			for _, i := range c.verify {
				s.mustVerify(st, i)
			}
			if c.change >= 0 {
				st.overwrite(t, c.change)
			}
			if c.ok {
				s.mustFinish(st)
			} else {
				s.mustReject(st, ErrFileHash, release.ErrChunkMismatch)
			}
		})
	}
}

func TestFinishBadStaging(t *testing.T) {
	t.Run("short", func(t *testing.T) {
		s := newStage(t, nil)
		st := newStaged(t, 3*chunk, 7)
		if err := os.Truncate(st.path, 2*chunk); err != nil {
			t.Fatal(err)
		}
		s.mustReject(st, ErrNotAllVerified)
	})
	t.Run("missing", func(t *testing.T) {
		s := newStage(t, nil)
		st := newStaged(t, 3*chunk, 7)
		os.Remove(st.path)
		s.mustReject(st, os.ErrNotExist)
	})
	t.Run("other file", func(t *testing.T) {
		s := newStage(t, nil)
		st := newStaged(t, 3*chunk, 7)
		if err := os.WriteFile(st.path, artifact(3*chunk, 8), 0o644); err != nil {
			t.Fatal(err)
		}
		s.mustReject(st, ErrFileHash)
	})
	t.Run("longer", func(t *testing.T) {
		s := newStage(t, nil)
		st := newStaged(t, 3*chunk, 7)
		for i := range st.sm.Manifest.NumChunks() {
			s.mustVerify(st, i)
		}
		if err := os.WriteFile(st.path, append(st.data, 0), 0o644); err != nil {
			t.Fatal(err)
		}
		s.mustReject(st, ErrFileHash)
	})
	t.Run("inconsistent manifest", func(t *testing.T) {
		// Every chunk hash matches but the signed whole-file hash does not:
		// the chunk hashes are the commitment, and only the publisher's key
		// can sign such a manifest, so the file is the release it signed.
		s := newStage(t, nil)
		st := newStaged(t, 3*chunk, 7)
		m := *st.sm.Manifest
		m.FileHash[0] ^= 1
		sm, err := release.SignManifest(&m, publisher)
		if err != nil {
			t.Fatal(err)
		}
		st.sm = sm
		for i := range m.NumChunks() {
			s.mustVerify(st, i)
		}
		s.mustFinish(st)
	})
}

// TestFinishAfterRestart: a fresh verifier (its memory of checked chunks gone) still
// checks the whole file by reading it back.
func TestFinishAfterRestart(t *testing.T) {
	s := newStage(t, nil)
	st := newStaged(t, 4*chunk+1, 9)
	s.mustVerify(st, 0)
	s.mustVerify(st, 2)

	fresh := s.spawn(Config{Policy: Policy{PublisherKey: release.PublicKeyOf(publisher), Target: target}})
	defer func() { s.sys.Root.StopFuture(fresh).Wait() }()
	if res := s.askPID(fresh, st.finish()); !isFileVerified(res) {
		t.Fatalf("fresh verifier, good file: %#v", res)
	}
	st.overwrite(t, 3*chunk)
	res := s.askPID(fresh, st.finish())
	if fr, ok := res.(*FileRejected); !ok || !errors.Is(fr.Err, ErrFileHash) {
		t.Fatalf("fresh verifier, changed file: %#v", res)
	}
}

func isFileVerified(res any) bool { _, ok := res.(*FileVerified); return ok }

// TestFinishAfterPanicRestart restarts the verifier for real: a fault hook
// panics on one CheckChunk, the supervisor rebuilds the actor (same PID, no
// memory of checked chunks) and Finish must still read back and decide correctly.
func TestFinishAfterPanicRestart(t *testing.T) {
	var armed atomic.Bool
	armed.Store(true)
	s := newStage(t, func(cfg *Config) {
		cfg.FaultHook = func(msg any) {
			if m, ok := msg.(*CheckChunk); ok && m.Index == 2 && armed.CompareAndSwap(true, false) {
				panic("injected fault")
			}
		}
	})
	st := newStaged(t, 4*chunk, 10)
	s.mustVerify(st, 0)
	s.mustVerify(st, 1)
	// The failing message is dropped: its future times out.
	if _, err := s.sys.Root.RequestFuture(s.pid, st.check(2), 200*time.Millisecond).Result(); err == nil {
		t.Fatal("the message that panicked was answered")
	}
	// Resent, as the downloader does when the verifier leaves it unanswered.
	s.mustVerify(st, 2)
	s.mustVerify(st, 3)
	s.mustFinish(st)

	// The first Finish dropped what it had seen; a second one reads back.
	st.overwrite(t, 1)
	s.mustReject(st, ErrFileHash)
}

// TestTwoReleasesInterleaved keeps the checked chunks of each release apart.
func TestTwoReleasesInterleaved(t *testing.T) {
	s := newStage(t, nil)
	a := newStaged(t, 3*chunk+7, 11)
	b := newStaged(t, 4*chunk, 12)
	for _, step := range []struct {
		st staged
		i  int
	}{{a, 1}, {b, 0}, {a, 0}, {b, 3}, {b, 1}, {a, 3}, {b, 2}, {a, 2}} {
		s.mustVerify(step.st, step.i)
	}
	s.mustFinish(b)
	s.mustFinish(a)
}
