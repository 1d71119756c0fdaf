package resolver

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// waitFor bounds every wait of these tests: long enough for a loaded
// machine under -race, short enough that a hang fails rather than stalls CI.
const waitFor = 20 * time.Second

// never is a poll interval the tests never reach: they poll with Poll.
const never = time.Hour

var target = release.Target{App: "myapp", Channel: "stable", Platform: "linux-amd64"}

// nodeConfig is a hermetic DHT node: loopback sockets, a short get grace,
// no table maintainer (nothing here runs for a minute), silent.
func nodeConfig() network.Config {
	return network.Config{
		ListenDHT:        "127.0.0.1:0",
		ListenQUIC:       "127.0.0.1:0",
		QueryResendDelay: 500 * time.Millisecond,
		GetGrace:         50 * time.Millisecond,
		SendRate:         5000,
		SendBurst:        500,
		NoMaintainer:     true,
	}
}

// startDHT starts count DHT nodes on loopback: the first with no starting
// nodes, every other bootstrapping from the first and the one before it.
// The nodes are closed when the test ends.
func startDHT(t *testing.T, count int) []*network.Node {
	t.Helper()
	nodes := make([]*network.Node, 0, count)
	for i := range count {
		cfg := nodeConfig()
		if i == 0 {
			cfg.NoBootstrap = true
		} else {
			cfg.Bootstrap = []string{nodes[0].DHTAddr().String(), nodes[i-1].DHTAddr().String()}
		}
		nodes = append(nodes, newNode(t, cfg))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap %s: %v", n.DHTAddr(), err)
		}
	}
	if count > 1 {
		if err := nodes[0].Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap first node: %v", err)
		}
	}
	return nodes
}

// joinDHT starts one more node, bootstrapped from the given ones.
func joinDHT(t *testing.T, nodes []*network.Node) *network.Node {
	t.Helper()
	cfg := nodeConfig()
	for _, n := range nodes {
		cfg.Bootstrap = append(cfg.Bootstrap, n.DHTAddr().String())
	}
	n := newNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap %s: %v", n.DHTAddr(), err)
	}
	return n
}

func newNode(t *testing.T, cfg network.Config) *network.Node {
	t.Helper()
	n, err := network.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("network.New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// publisher signs records with a deterministic key.
type publisher struct {
	sk  ed25519.PrivateKey
	pub release.PublicKey
}

func newPublisher(seed byte) publisher {
	var s [ed25519.SeedSize]byte
	s[0], s[1] = seed, 0x5e
	sk := ed25519.NewKeyFromSeed(s[:])
	return publisher{sk: sk, pub: release.PublicKeyOf(sk)}
}

// record signs a packet holding entries with sequence number seq.
func (p publisher) record(t *testing.T, seq int64, entries ...release.Entry) *release.SignedPacket {
	t.Helper()
	sp, err := release.NewSignedPacket(p.sk, entries, seq)
	if err != nil {
		t.Fatalf("NewSignedPacket: %v", err)
	}
	return sp
}

// rawRecord signs a packet with one TXT record of the given name (relative
// to the key, e.g. "linux-amd64.stable.myapp._rpe") and value, bypassing the
// checks NewSignedPacket makes: malformed entries come from here.
func (p publisher) rawRecord(t *testing.T, seq int64, name, value string) *release.SignedPacket {
	t.Helper()
	n, err := dnsmessage.NewName(name + "." + p.pub.String() + ".")
	if err != nil {
		t.Fatalf("name %q: %v", name, err)
	}
	msg := dnsmessage.Message{
		Header: dnsmessage.Header{Response: true, Authoritative: true},
		Answers: []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: n, Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET, TTL: release.RecordTTL},
			Body:   &dnsmessage.TXTResource{TXT: []string{value}},
		}},
	}
	packet, err := msg.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	sp := &release.SignedPacket{PublicKey: p.pub, Seq: seq, Packet: packet}
	copy(sp.Sig[:], ed25519.Sign(p.sk, release.SignableBytes(seq, packet)))
	return sp
}

// entry is the record entry of version for tg; the manifest ID stands for
// the version (same version and target, same ID).
func entry(tg release.Target, version string) release.Entry {
	return release.Entry{
		App: tg.App, Channel: tg.Channel, Platform: tg.Platform,
		Version:    semver.MustParse(version),
		ManifestID: manifestID(tg, version),
		Size:       4096,
	}
}

func manifestID(tg release.Target, version string) release.ManifestID {
	return release.ManifestID(sha256.Sum256([]byte(tg.String() + "@" + version)))
}

// heldDir returns a state directory holding p as the newest record.
func heldDir(t *testing.T, p *release.SignedPacket) string {
	t.Helper()
	dir := t.TempDir()
	if err := state.SaveRecord(dir, p); err != nil {
		t.Fatal(err)
	}
	return dir
}

// put stores p in the DHT through n.
func put(t *testing.T, n *network.Node, p *release.SignedPacket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := n.PutRecord(ctx, p); err != nil {
		t.Fatalf("put record seq %d: %v", p.Seq, err)
	}
}

// logSink keeps every log record as one line "LEVEL msg k=v ...", and
// prints it too when RPE_TEST_LOG is set.
type logSink struct {
	mu    sync.Mutex
	lines []string
	echo  bool
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	s.mu.Lock()
	s.lines = append(s.lines, b.String())
	s.mu.Unlock()
	if s.echo {
		fmt.Fprintln(os.Stderr, b.String())
	}
	return nil
}

func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

// has reports whether a line holds every one of parts.
func (s *logSink) has(parts ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.lines, func(l string) bool {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				return false
			}
		}
		return true
	})
}

// crashes is the test parent's supervisor strategy: it records why the
// resolver failed and restarts it, as the engine does.
type crashes chan any

func (c crashes) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	select {
	case c <- reason:
	default:
	}
	sup.RestartChildren(child)
}

// parent spawns the resolver and hands the test every message it sends.
type parent struct {
	props *actor.Props
	pids  chan *actor.PID
	msgs  chan any
}

func (p *parent) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.pids <- ctx.Spawn(p.props)
	case *ReleaseFound, *RecordUpdated, *RecordRefused, *Rebootstrapped, *Stale, *KeyRotated:
		p.msgs <- m
	}
}

// rig is a resolver under a test parent in an actor system of its own.
type rig struct {
	t       *testing.T
	sys     *actor.ActorSystem
	pid     *actor.PID // the resolver
	msgs    chan any   // what the resolver sent its parent
	polls   chan *pollResult
	crashes crashes
	logs    *logSink
	cfg     Config
	syncs   int
	foreign *release.SignedPacket // the barrier: refused at once
}

// newRig starts a resolver with cfg. Unset fields get test values: a temp
// state dir, no timer-driven poll within the test, a recording logger.
func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	r := &rig{
		t:       t,
		msgs:    make(chan any, 256),
		polls:   make(chan *pollResult, 256),
		crashes: make(crashes, 16),
		logs:    &logSink{echo: os.Getenv("RPE_TEST_LOG") != ""},
		foreign: newPublisher(0xee).record(t, 1, entry(target, "9.9.9")),
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.FirstPoll == 0 {
		cfg.FirstPoll = never
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = never
	}
	if cfg.Target == (release.Target{}) {
		cfg.Target = target
	}
	cfg.Logger = slog.New(r.logs)
	hook := cfg.FaultHook
	cfg.FaultHook = func(msg any) {
		if pr, ok := msg.(*pollResult); ok {
			r.polls <- pr
		}
		if hook != nil {
			hook(msg)
		}
	}
	r.cfg = cfg
	r.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	pids := make(chan *actor.PID, 1)
	p := &parent{props: Props(cfg), pids: pids, msgs: r.msgs}
	ppid := r.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return p }, actor.WithSupervisor(r.crashes)))
	r.pid = <-pids
	t.Cleanup(func() {
		if err := r.sys.Root.StopFuture(ppid).Wait(); err != nil {
			t.Errorf("stop resolver: %v", err)
		}
		r.sys.Shutdown()
		select {
		case why := <-r.crashes:
			t.Errorf("resolver failed: %v", why)
		default:
		}
	})
	return r
}

// send hands the resolver a message.
func (r *rig) send(msg any) { r.sys.Root.Send(r.pid, msg) }

// sync returns what the resolver has sent its parent so far. It offers a
// record signed by another key, which the resolver refuses at once, and
// collects messages up to that refusal: the resolver handles messages in
// order and its messages to the parent arrive in order.
func (r *rig) sync() []any {
	r.t.Helper()
	r.syncs++
	from := fmt.Sprintf("sync-%d", r.syncs)
	r.send(&Offer{Packet: r.foreign, From: from})
	var got []any
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-r.msgs:
			if rf, ok := m.(*RecordRefused); ok && rf.From == from {
				if !errors.Is(rf.Err, ErrWrongKey) {
					r.t.Fatalf("barrier refused with %v, want ErrWrongKey", rf.Err)
				}
				return got
			}
			got = append(got, m)
		case <-deadline:
			r.t.Fatalf("no answer to the barrier within %v; got %s", waitFor, describe(got))
			return nil
		}
	}
}

// poll makes the resolver look the record up now and returns the lookup's
// result and what the resolver sent while handling it.
func (r *rig) poll() (*pollResult, []any) {
	r.t.Helper()
	r.send(&Poll{})
	return r.nextPoll()
}

// nextPoll waits for the next lookup to end, however it was started.
func (r *rig) nextPoll() (*pollResult, []any) {
	r.t.Helper()
	select {
	case pr := <-r.polls:
		return pr, r.sync()
	case <-time.After(waitFor):
		r.t.Fatalf("no lookup ended within %v", waitFor)
		return nil, nil
	}
}

// offer hands the resolver a gossiped record and returns what it sent.
func (r *rig) offer(p *release.SignedPacket, from string) []any {
	r.t.Helper()
	r.send(&Offer{Packet: p, From: from})
	return r.sync()
}

// waitMsg waits for a message that match accepts, skipping others.
func (r *rig) waitMsg(what string, match func(any) bool) any {
	r.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-r.msgs:
			if match(m) {
				return m
			}
		case <-deadline:
			r.t.Fatalf("no %s within %v", what, waitFor)
			return nil
		}
	}
}

func describe(msgs []any) string {
	var parts []string
	for _, m := range msgs {
		switch m := m.(type) {
		case *ReleaseFound:
			parts = append(parts, fmt.Sprintf("ReleaseFound(%s seq %d)", m.Entry.Version, m.Packet.Seq))
		case *RecordUpdated:
			parts = append(parts, fmt.Sprintf("RecordUpdated(seq %d)", m.Packet.Seq))
		case *RecordRefused:
			parts = append(parts, fmt.Sprintf("RecordRefused(%s: %v)", m.From, m.Err))
		case *Rebootstrapped:
			parts = append(parts, fmt.Sprintf("Rebootstrapped(%d: %v)", m.Misses, m.Err))
		default:
			parts = append(parts, fmt.Sprintf("%T", m))
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func only[T any](msgs []any) []T {
	var out []T
	for _, m := range msgs {
		if x, ok := m.(T); ok {
			out = append(out, x)
		}
	}
	return out
}
