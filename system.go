// Package engine is rpe's library API: Start runs a node that keeps one
// program up to date, Publish signs a release and seeds it, Fetch downloads
// and verifies a release without installing it, and Lookup lists what a
// publisher's record names.
//
// A node runs five stages (resolver, swarm, downloader, verifier,
// installer), each restarted alone when it fails; a stage that fails too
// often is stopped for good, reported by a Failed event (ErrStageStopped)
// and listed in Status.Stopped. Outcomes go out as typed events on Events.
// docs/ARCHITECTURE.md in the repository shows the stages, the messages
// between them, who owns which state and the threads of control;
// docs/SECURITY.md says what each check defends against.
package engine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// Config configures a node. The zero value of every field means its
// default, given in the field's comment; PublisherKey, App and
// CurrentVersion are required.
type Config struct {
	// PublisherKey is the publisher's public key in z-base-32 (52 characters).
	PublisherKey string
	// App names the program; required.
	App string
	// Channel defaults to "stable".
	Channel string
	// Platform defaults to GOOS-GOARCH of this build.
	Platform string
	// CurrentVersion is the running version (semver); required.
	CurrentVersion string
	// Target is the file to replace; default the running executable with
	// symlinks resolved.
	Target string
	// StateDir keeps the node's state (releases, record, floor, backup);
	// default <user cache dir>/rpe/<app>-<channel>.
	StateDir string
	// Apply says when a verified release is installed; the zero value is
	// ApplyNow (swap and re-exec at once).
	Apply Policy
	// Bootstrap lists DHT starting nodes (host:port); nil means the public
	// Mainline routers.
	Bootstrap []string
	// ListenDHT and ListenQUIC are UDP addresses; default ":0".
	ListenDHT, ListenQUIC string
	// Logger receives the node's logs; nil is silent.
	Logger *slog.Logger
	// PollInterval is the mean time between DHT lookups of the record;
	// default 5m. A node also learns of a release at once from any peer
	// that gossips a newer signed record.
	PollInterval time.Duration
	// NoPoll turns the polling off: the node learns of releases only from
	// its peers (the app's awareness mesh and gossip). For tests and
	// simulations of the mesh; default false.
	NoPoll bool
	// UploadRate caps serving in bytes per second; 0 means unlimited.
	UploadRate int64
	// Relay opts this node in to relaying for pairs of nodes behind NATs
	// that cannot punch a hole to each other; it offers relaying only while
	// peers see it without a NAT. RelayRate caps the bytes per second it
	// forwards for any one node; 0 means 256 KiB/s. Default off. See
	// docs/NETWORK.md.
	Relay     bool
	RelayRate int
	// DownloadRate caps chunk downloads in bytes per second; 0 means
	// unlimited.
	DownloadRate int64
	// NodeKey is the node's own ed25519 key for QUIC; default a key kept in
	// StateDir/node.key (made on first start).
	NodeKey ed25519.PrivateKey
	// Exec replaces the process with the program at path after an install
	// under ApplyNow or ApplyAt; default syscall.Exec with the same argv and
	// env. A supervisor that restarts the program itself sets it.
	Exec func(path string, argv, env []string) error
	// MetricsAddr, when set, is a TCP address (e.g. 127.0.0.1:9090; port 0
	// picks one, see Status.MetricsAddr) on which the node serves
	// Prometheus metrics at /metrics and its Status as JSON at /status.
	// Default: nothing listens.
	MetricsAddr string
	// HealthCheck, when set, must return nil within the health deadline after
	// a restart into a new version, or the next start rolls back; default: a
	// started engine counts as healthy.
	HealthCheck func(ctx context.Context) error
	// SharedSecret, in z-base-32 (52 characters, from `rpe init
	// --private`), makes the node a member of the publisher's private
	// swarm: it reads only the record's private entries (encrypted with a
	// key derived from the secret), finds peers under swarm IDs derived from
	// it, and talks only to peers that prove they know it. Empty: public.
	SharedSecret string
	// StaleAfter is how old (by its signing time) the newest record the node
	// holds may grow before it emits Stale; zero means never. Set it above
	// the interval at which the publisher re-signs its record.
	StaleAfter time.Duration
}

// settings is a validated, defaulted Config.
type settings struct {
	Config
	hooks   hooks.Hooks
	now     func() time.Time
	pub     release.PublicKey
	version *semver.Version
	target  release.Target
	// seedOnly nodes (publishers) serve and keep the record alive but never
	// fetch or install: a publisher must not replace its own artifact, or
	// itself, with a newer release someone else published.
	seedOnly bool
	// private is the private swarm of SharedSecret; nil when public.
	private *release.Private
	// reuseFrom are local files whose chunks a new release may share (the
	// installed target), copied instead of downloaded.
	reuseFrom []string
}

func populate(ctx context.Context, cfg Config) (*settings, error) {
	s := &settings{Config: cfg, hooks: hooks.From(ctx)}
	if cfg.PublisherKey == "" {
		return nil, errors.New("engine: Config.PublisherKey is required")
	}
	pub, err := release.ParsePublicKey(cfg.PublisherKey)
	if err != nil {
		return nil, fmt.Errorf("engine: Config.PublisherKey: %w", err)
	}
	s.pub = pub
	if s.private, err = privateSwarm(cfg.SharedSecret); err != nil {
		return nil, fmt.Errorf("engine: Config.SharedSecret: %w", err)
	}
	for _, d := range []struct {
		name string
		v    int64
	}{
		{"PollInterval", int64(cfg.PollInterval)},
		{"UploadRate", cfg.UploadRate}, {"DownloadRate", cfg.DownloadRate},
		{"StaleAfter", int64(cfg.StaleAfter)},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("engine: Config.%s is negative (%d); zero means the default", d.name, d.v)
		}
	}
	if cfg.App == "" {
		return nil, errors.New("engine: Config.App is required")
	}
	if cfg.CurrentVersion == "" {
		return nil, errors.New("engine: Config.CurrentVersion is required")
	}
	if s.version, err = release.ParseVersion(cfg.CurrentVersion); err != nil {
		return nil, fmt.Errorf("engine: Config.CurrentVersion: %w", err)
	}
	if s.Channel == "" {
		s.Channel = "stable"
	}
	if s.Platform == "" {
		s.Platform = runtime.GOOS + "-" + runtime.GOARCH
	}
	s.target = release.Target{App: s.App, Channel: s.Channel, Platform: s.Platform}
	if s.Target == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("engine: find running executable: %w", err)
		}
		if s.Target, err = filepath.EvalSymlinks(exe); err != nil {
			return nil, fmt.Errorf("engine: resolve %s: %w", exe, err)
		}
	}
	if s.StateDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("engine: no state dir given and no user cache dir: %w", err)
		}
		s.StateDir = filepath.Join(cache, "rpe", s.App+"-"+s.Channel)
	}
	// Absolute paths: the install marker records them, and a process that
	// changes directory must still find them.
	if s.StateDir, err = filepath.Abs(s.StateDir); err != nil {
		return nil, fmt.Errorf("engine: state dir: %w", err)
	}
	if s.Target, err = filepath.Abs(s.Target); err != nil {
		return nil, fmt.Errorf("engine: target: %w", err)
	}
	s.reuseFrom = []string{s.Target}
	if s.ListenDHT == "" {
		s.ListenDHT = ":0"
	}
	if s.ListenQUIC == "" {
		s.ListenQUIC = ":0"
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.PollInterval == 0 {
		s.PollInterval = 5 * time.Minute
	}
	s.now = s.hooks.Now
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Engine is a running node.
type Engine struct {
	cfg    *settings
	sys    *actor.ActorSystem
	ownSys bool
	root   *actor.PID
	node   *network.Node
	store  *store.Store
	events *eventQueue

	mu     sync.Mutex
	status Status

	counters counters
	metrics  *metricsServer // nil unless Config.MetricsAddr

	rootPID       atomic.Pointer[actor.PID]
	trusted       atomic.Pointer[release.PublicKey] // the publisher key trusted now (after rotations)
	bootstrapDone chan struct{}
	stopping      chan struct{}
	stopOnce      sync.Once
	stopErr       error
}

// Status is a snapshot of what a node is doing.
type Status struct {
	PublicKey      string
	App            string
	Channel        string
	Platform       string
	CurrentVersion string
	DHTAddr        string
	QUICAddr       string
	// Latest is the newest version the record names for this target, if any.
	Latest     string
	ManifestID string
	// Phase is what the node is doing with the Latest release.
	Phase Phase
	// Verified and Total count the chunks of the release being fetched.
	Verified int
	Total    int
	// Peers is how many peers the download has.
	Peers int
	// MetricsAddr is where /metrics and /status are served, if anywhere.
	MetricsAddr string
	// DHTNodes is how many nodes the DHT routing table holds now; 0 means
	// the node has not joined the DHT (yet).
	DHTNodes int
	Uploaded int64 // chunk bytes served to peers
	Served   int64 // chunks served to peers
	Fetched  int64 // chunk bytes received
	Wasted   int64 // duplicate and rejected chunk bytes received
	Reused   int64 // chunk bytes copied from the installed file, not downloaded
	Restarts int   // stage restarts since Start
	// Stopped lists the stages stopped for good after failing too often;
	// the node no longer does what they did.
	Stopped []Stage
	// RecordSigned is when the newest record held was signed (zero: none).
	RecordSigned time.Time
	// Stale is set while the node has seen no record signed within
	// Config.StaleAfter (see the Stale event).
	Stale bool
}

// Start starts a node: opens its sockets, joins the DHT and spawns the
// stages. It returns once the node runs; joining the DHT continues in the
// background. ctx bounds starting only: once Start has returned, cancelling
// ctx does not stop the node (as with net.Dialer.DialContext); Stop does.
func Start(ctx context.Context, cfg Config) (*Engine, error) {
	s, err := populate(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: state dir: %w", err)
	}
	// A node that followed a key rotation trusts the new key alone, also
	// after a restart with the old key still configured.
	if s.pub, _, err = state.TrustedKey(s.StateDir, s.pub); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	// The installer stage, the trial's only writer, checks for a pending
	// install as it starts (installer.Boot) and runs the health check.
	return startNode(ctx, s)
}

// startNode opens the node's sockets and starts it.
func startNode(ctx context.Context, s *settings) (*Engine, error) {
	nc := network.Config{
		DHTConn: s.hooks.DHTConn, QUICConn: s.hooks.QUICConn,
		ListenDHT: s.ListenDHT, ListenQUIC: s.ListenQUIC,
		Bootstrap: s.Bootstrap, Logger: s.Logger,
		QueryResendDelay: s.hooks.QueryResendDelay, DHTReadOnly: s.hooks.DHTReadOnly,
		Relay: s.Relay, RelayRate: s.RelayRate,
	}
	if nc.DHTConn == nil && nc.QUICConn == nil {
		// A restarted node listens on its old ports when it can, so its
		// announced address stays true.
		nc.PortFile = filepath.Join(s.StateDir, "ports")
	}
	node, err := network.New(ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e, err := startNodeOn(ctx, s, node)
	if err != nil {
		node.Close()
		return nil, err
	}
	return e, nil
}

// startNodeOn starts a node on an open network node, which it then owns.
func startNodeOn(ctx context.Context, s *settings, node *network.Node) (*Engine, error) {
	if f := s.hooks.Node; f != nil {
		f(node)
	}
	nodeKey := s.NodeKey
	if nodeKey == nil {
		var err error
		if nodeKey, err = loadNodeKey(s.StateDir); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(s.StateDir, s.pub, release.Limits{}, s.Logger)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e := &Engine{cfg: s, node: node, store: st, events: newEventQueue(), stopping: make(chan struct{})}
	e.events.onEmit = e.counters.count
	e.trusted.Store(&s.pub)
	e.status = Status{
		PublicKey: s.pub.String(), App: s.App, Channel: s.Channel, Platform: s.Platform,
		CurrentVersion: s.version.String(), DHTAddr: node.DHTAddr().String(), QUICAddr: node.QUICAddr().String(),
		Phase: PhaseIdle,
	}
	if s.MetricsAddr != "" {
		m, err := serveMetrics(e, s.MetricsAddr)
		if err != nil {
			e.events.close()
			st.Close()
			return nil, err
		}
		e.metrics = m
		e.status.MetricsAddr = m.addr.String()
	}
	if g := s.hooks.Group; g != nil {
		e.sys = g.Get(func(log *slog.Logger) (any, func()) {
			sys := newActorSystem(log)
			return sys, sys.Shutdown
		}).(*actor.ActorSystem)
	} else {
		e.sys = newActorSystem(s.Logger)
		e.ownSys = true
	}
	e.root = e.sys.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor {
		return newRoot(e, nodeKey)
	}, actor.WithSupervisor(newSupervisor(e))), "rpe-"+s.App)
	e.bootstrapDone = make(chan struct{})
	go func() {
		defer close(e.bootstrapDone)
		bctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		go func() {
			select {
			case <-e.stopping:
				cancel()
			case <-bctx.Done():
			}
		}()
		if err := node.Bootstrap(bctx); err != nil && bctx.Err() == nil {
			s.Logger.Warn("engine: bootstrap", "err", err)
		}
	}()
	return e, nil
}

// openStoreWith opens the state dir's store and adds a complete release from
// a local file (a publisher's artifact).
func openStoreWith(s *settings, sm *release.SignedManifest, path string) (*store.Store, error) {
	st, err := store.Open(s.StateDir, s.pub, release.Limits{}, s.Logger)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if _, err := st.AddFile(sm, path); err != nil {
		st.Close()
		return nil, fmt.Errorf("publish: %w", err)
	}
	return st, nil
}

// privateSwarm derives the private swarm of a secret in text form; an empty
// text is a public swarm (nil).
func privateSwarm(secret string) (*release.Private, error) {
	if secret == "" {
		return nil, nil
	}
	sec, err := release.ParseSecret(secret)
	if err != nil {
		return nil, err
	}
	return release.NewPrivate(sec)
}

func loadNodeKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, "node.key")
	k, err := release.ReadSecretKeyFile(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("engine: node key: %w", err)
	}
	if k, err = release.GenerateSecretKey(rand.Reader); err != nil {
		return nil, err
	}
	if err := release.WriteSecretKeyFile(path, k); err != nil {
		return nil, fmt.Errorf("engine: node key: %w", err)
	}
	return k, nil
}

// Bootstrapped is closed when the node's first DHT bootstrap, started by
// Start in the background, has ended, whether or not it found nodes.
func (e *Engine) Bootstrapped() <-chan struct{} { return e.bootstrapDone }

// Events returns the node's events, in order. The channel is closed by Stop.
func (e *Engine) Events() <-chan Event { return e.events.out }

// Status returns a snapshot of the node's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	s := e.status
	s.Stopped = slices.Clone(s.Stopped)
	e.mu.Unlock()
	s.DHTNodes = e.node.TableSize()
	return s
}

func (e *Engine) update(f func(*Status)) {
	e.mu.Lock()
	f(&e.status)
	e.mu.Unlock()
}

// Stop stops the actor tree, closes the sockets and the store, and waits for
// every goroutine the node started.
func (e *Engine) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() {
		close(e.stopping)
		f := e.sys.Root.StopFuture(e.root)
		done := make(chan error, 1)
		go func() { done <- f.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				e.stopErr = fmt.Errorf("engine: stop actors: %w", err)
			}
		case <-ctx.Done():
			e.stopErr = ctx.Err()
		}
		<-e.bootstrapDone
		if e.metrics != nil {
			e.metrics.close(ctx)
		}
		if err := e.node.Close(); err != nil && e.stopErr == nil {
			e.stopErr = err
		}
		e.store.Close()
		if e.ownSys {
			e.sys.Shutdown()
		}
		e.events.close()
	})
	return e.stopErr
}

// nodeID returns this node's wire identity.
func nodeID(k ed25519.PrivateKey) wire.NodeID { return wire.NodeIDOf(k.Public().(ed25519.PublicKey)) }
