package engine

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// testNet is a DHT bootstrap node on loopback for one test.
func testNet(t *testing.T) []string {
	t.Helper()
	n, err := network.New(context.Background(), network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true,
		QueryResendDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return []string{n.DHTAddr().String()}
}

func testKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := release.GenerateSecretKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testArtifact writes n pseudo-random bytes to a file and returns its path.
func testArtifact(t *testing.T, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "app-release")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// execRecorder stands in for syscall.Exec in tests: the process stays.
type execRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (r *execRecorder) exec(path string, argv, env []string) error {
	r.mu.Lock()
	r.paths = append(r.paths, path)
	r.mu.Unlock()
	return nil
}

// testLogger logs to stderr when RPE_TEST_LOG is set, else nothing.
func testLogger(name string) *slog.Logger {
	if os.Getenv("RPE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", name)
}

// testConfig returns a hermetic node config: loopback, temp dirs, fast polls.
func testConfig(t *testing.T, pub release.PublicKey, boot []string, version string) Config {
	t.Helper()
	dir := t.TempDir()
	target := filepath.Join(dir, "app")
	if err := os.WriteFile(target, []byte("old version "+version), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &execRecorder{}
	return Config{
		PublisherKey: pub.String(), App: "app", CurrentVersion: version, Target: target,
		StateDir: filepath.Join(dir, "state"), Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0",
		PollInterval: 300 * time.Millisecond, Exec: rec.exec,
		Logger: testLogger("node"),
	}
}

func testPublish(t *testing.T, key ed25519.PrivateKey, boot []string, artifact, version string, mod func(*PublishConfig)) *Publisher {
	t.Helper()
	pc := PublishConfig{
		Key: key, Artifact: artifact, Version: version, App: "app", Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", StateDir: t.TempDir(),
		Logger: testLogger("publisher"),
	}
	if mod != nil {
		mod(&pc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Publish(testCtx(ctx, nil), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

// testCtx carries the tests' hooks: loopback-fast DHT resends and peer
// lookups, changed by mod.
func testCtx(ctx context.Context, mod func(*hooks.Hooks)) context.Context {
	h := &hooks.Hooks{QueryResendDelay: 200 * time.Millisecond, FindInterval: 300 * time.Millisecond}
	if mod != nil {
		mod(h)
	}
	return hooks.With(ctx, h)
}

func startEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	return startEngineWith(t, cfg, nil)
}

// startEngineWith starts an engine with the tests' hooks changed by mod.
func startEngineWith(t *testing.T, cfg Config, mod func(*hooks.Hooks)) *Engine {
	t.Helper()
	e, err := Start(testCtx(context.Background(), mod), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(context.Background()) })
	return e
}

// eventLog collects an engine's events so tests can wait on them.
type eventLog struct {
	mu     sync.Mutex
	cond   *sync.Cond
	events []Event
	closed bool
}

func collect(e *Engine) *eventLog {
	l := &eventLog{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		for ev := range e.Events() {
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.closed = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l
}

// wait blocks until an event satisfies ok, or fails the test at the deadline.
func (l *eventLog) wait(t *testing.T, d time.Duration, what string, ok func(Event) bool) Event {
	t.Helper()
	timer := time.AfterFunc(d, func() {
		l.mu.Lock()
		l.closed = true // wake the waiter; it reports the timeout
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer timer.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 0; ; i++ {
		for ; i < len(l.events); i++ {
			if ok(l.events[i]) {
				return l.events[i]
			}
		}
		if l.closed {
			t.Fatalf("no %s event within %s; saw %s", what, d, l.summary())
		}
		l.cond.Wait()
		i--
	}
}

func (l *eventLog) summary() string {
	var b bytes.Buffer
	for i, ev := range l.events {
		if i == 40 {
			fmt.Fprintf(&b, "… (%d more)", len(l.events)-i)
			break
		}
		fmt.Fprintf(&b, "%T%+v; ", ev, ev)
	}
	return b.String()
}

func (l *eventLog) count(ok func(Event) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if ok(ev) {
			n++
		}
	}
	return n
}

func isInstalled(ev Event) bool { _, ok := ev.(Installed); return ok }

func TestUpdateInProcess(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	artifact, want := testArtifact(t, 1<<20+12345)
	var nodes []*Engine
	var logs []*eventLog
	for i := 0; i < 3; i++ {
		e := startEngine(t, testConfig(t, pub, boot, "1.0.0"))
		nodes = append(nodes, e)
		logs = append(logs, collect(e))
	}
	testPublish(t, key, boot, artifact, "1.1.0", nil)
	for i, e := range nodes {
		logs[i].wait(t, 60*time.Second, "Installed", isInstalled)
		got, err := os.ReadFile(e.cfg.Target)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("node %d: target differs from the published artifact", i)
		}
		if st := e.Status(); st.Phase != PhaseInstalled || st.Latest != "1.1.0" {
			t.Errorf("node %d: status %+v", i, st)
		}
		info, err := os.Stat(e.cfg.Target)
		if err != nil || info.Mode().Perm() != 0o755 {
			t.Errorf("node %d: target mode %v, %v", i, info.Mode(), err)
		}
	}
}

func TestPublishRefusesOlderVersion(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, _ := testArtifact(t, 100000)
	testPublish(t, key, boot, artifact, "2.0.0", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Publish(ctx, PublishConfig{
		Key: key, Artifact: artifact, Version: "1.9.0", App: "app", Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", StateDir: t.TempDir(),
	})
	if !errors.Is(err, ErrNotNewer) {
		t.Fatalf("publish 1.9.0 over 2.0.0: got %v, want ErrNotNewer", err)
	}
}

// TestPublisherDoesNotFollowNewerReleases: a publisher still seeding 1.1.0
// must not fetch 1.2.0 published by another process and overwrite its own
// artifact (or exec it).
func TestPublisherDoesNotFollowNewerReleases(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	art1, want1 := testArtifact(t, 200000)
	p1 := testPublish(t, key, boot, art1, "1.1.0", nil)
	p1log := collect(p1.Engine)
	art2, _ := testArtifact(t, 200000)
	testPublish(t, key, boot, art2, "1.2.0", nil)
	// A node sees 1.2.0 and installs it: the record is out there.
	e := startEngine(t, testConfig(t, pub, boot, "1.0.0"))
	collect(e).wait(t, 60*time.Second, "Installed 1.2.0", func(ev Event) bool {
		i, ok := ev.(Installed)
		return ok && i.Version == "1.2.0"
	})
	// The first publisher polls too; give it a lookup of its own.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := p1.node.GetRecord(ctx, pub); err != nil {
		t.Fatal(err)
	}
	if n := p1log.count(func(ev Event) bool { _, ok := ev.(ReleaseFound); return ok }); n != 0 {
		t.Fatalf("the publisher of 1.1.0 reported %d newer releases to fetch", n)
	}
	got, _ := os.ReadFile(art1)
	if !bytes.Equal(got, want1) {
		t.Fatal("the publisher's artifact was replaced")
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	good := Config{PublisherKey: release.PublicKeyOf(testKey(t)).String(), App: "app", CurrentVersion: "1.0.0", StateDir: t.TempDir()}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no key", func(c *Config) { c.PublisherKey = "" }, "PublisherKey is required"},
		{"bad key", func(c *Config) { c.PublisherKey = "nope" }, "PublisherKey"},
		{"no app", func(c *Config) { c.App = "" }, "App is required"},
		{"not semver", func(c *Config) { c.CurrentVersion = "one" }, "CurrentVersion"},
		{"negative poll", func(c *Config) { c.PollInterval = -time.Second }, "PollInterval is negative"},
		{"negative upload rate", func(c *Config) { c.UploadRate = -1 }, "UploadRate is negative"},
	} {
		cfg := good
		tc.edit(&cfg)
		e, err := Start(context.Background(), cfg)
		if err == nil {
			e.Stop(context.Background())
			t.Errorf("%s: started", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}
