// Package engine is rpe's library API: Start runs a node that keeps one
// program up to date, Publish signs and seeds a release.
//
// A node is one actor tree (github.com/asynkron/protoactor-go) under its own
// root, which supervises five stages one-for-one with backoff and a restart
// limit:
//
//	resolver ──ReleaseFound──▶ root ──Fetch──▶ downloader ◀──peers── swarm
//	                                              │  ▲
//	                                     chunk ──▶ verifier
//	                                              │
//	                            Completed ──▶ installer ──Installed──▶ root
//
// A stage that panics is restarted alone and reloads what it needs from the
// state directory, so a restart loses no verified chunk. Outcomes go out as
// typed events on Events. See ../shared/DESIGN.md for the architecture and
// docs/SECURITY.md for what each check defends against.
package engine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/actors/installer"
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
	Apply installer.Policy
	// Bootstrap lists DHT starting nodes (host:port); nil means the public
	// Mainline routers. Tests and simulations always set it.
	Bootstrap []string
	// ListenDHT and ListenQUIC are UDP addresses; default ":0". Ignored when
	// the matching conn is set.
	ListenDHT, ListenQUIC string
	// DHTConn and QUICConn, when set, are used instead of new UDP sockets
	// (the simulation passes in-memory conns).
	DHTConn, QUICConn net.PacketConn
	// Logger receives the node's logs; nil is silent.
	Logger *slog.Logger
	// PollInterval is the mean time between DHT lookups of the record;
	// default 5m.
	PollInterval time.Duration
	// ActorSystem, when set, hosts the node's actor tree (the simulation runs
	// hundreds of nodes in one system); default a new system per node.
	ActorSystem *actor.ActorSystem
	// UploadRate caps serving in bytes per second; 0 means unlimited.
	UploadRate int64
	// DownloadRate caps chunk downloads in bytes per second; 0 means
	// unlimited.
	DownloadRate int64
	// NodeKey is the node's own ed25519 key for QUIC; default a key kept in
	// StateDir/node.key (made on first start).
	NodeKey ed25519.PrivateKey
	// Exec replaces the process after an install under ApplyNow or ApplyAt;
	// default installer.ExecSelf (syscall.Exec with the same argv and env).
	Exec installer.Execer
	// HealthCheck, when set, must return nil within the health deadline after
	// a restart into a new version, or the next start rolls back; default: a
	// started engine counts as healthy.
	HealthCheck func(ctx context.Context) error
	// Now is the clock; default time.Now.
	Now func() time.Time
	// StaleAfter is how old (by its signing time) the newest record the node
	// holds may grow before it emits Stale; zero means never. Set it above
	// the interval at which the publisher re-signs its record.
	StaleAfter time.Duration

	// Tuning, mostly for tests and simulations.
	QueryResendDelay time.Duration // DHT query resend delay; default network's
	ChunkTimeout     time.Duration // one chunk request; default 20s
	FindInterval     time.Duration // peer lookups while downloading; default 2s

	faultHook func(stage string, msg any)
}

// ApplyNow installs at once and re-executes into the new version.
var ApplyNow = installer.Policy{Kind: installer.Now}

// ApplyOnRestart swaps the file and lets the next start run it.
var ApplyOnRestart = installer.Policy{Kind: installer.OnRestart}

// ApplyAt installs at the next local hh:mm.
func ApplyAt(hour, minute int) installer.Policy {
	return installer.Policy{Kind: installer.At, Hour: hour, Minute: minute}
}

// settings is a validated, defaulted Config.
type settings struct {
	Config
	pub     release.PublicKey
	version *semver.Version
	target  release.Target
	// seedOnly nodes (publishers) serve and keep the record alive but never
	// fetch or install: a publisher must not replace its own artifact, or
	// itself, with a newer release someone else published.
	seedOnly bool
}

func populate(cfg Config) (*settings, error) {
	s := &settings{Config: cfg}
	if cfg.PublisherKey == "" {
		return nil, errors.New("engine: Config.PublisherKey is required")
	}
	pub, err := release.ParsePublicKey(cfg.PublisherKey)
	if err != nil {
		return nil, fmt.Errorf("engine: Config.PublisherKey: %w", err)
	}
	s.pub = pub
	for _, d := range []struct {
		name string
		v    int64
	}{
		{"PollInterval", int64(cfg.PollInterval)}, {"FindInterval", int64(cfg.FindInterval)},
		{"ChunkTimeout", int64(cfg.ChunkTimeout)}, {"QueryResendDelay", int64(cfg.QueryResendDelay)},
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
	if s.Now == nil {
		s.Now = time.Now
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

	rootPID       atomic.Pointer[actor.PID]
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
	// Phase is one of idle, downloading, verified, scheduled, installed.
	Phase    string
	Verified int
	Total    int
	Peers    int
	Uploaded int64 // chunk bytes served to peers
	Served   int64 // chunks served to peers
	Fetched  int64 // chunk bytes received
	Wasted   int64 // duplicate and rejected chunk bytes received
	Restarts int
	// RecordSigned is when the newest record held was signed (zero: none).
	RecordSigned time.Time
	// Stale is set while the node has seen no record signed within
	// Config.StaleAfter (see the Stale event).
	Stale bool
}

// Start starts a node: opens its sockets, joins the DHT and spawns the actor
// tree. It returns once the node runs; bootstrapping continues in the
// background. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (*Engine, error) {
	s, err := populate(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: state dir: %w", err)
	}
	boot, err := installer.Boot(s.StateDir, s.version.String(), s.Now())
	if err != nil {
		s.Logger.Warn("engine: pending install check", "err", err)
	}
	e, err := startNode(ctx, s)
	if err != nil {
		return nil, err
	}
	e.confirmHealth(boot)
	return e, nil
}

// startNode opens the node's sockets and starts it.
func startNode(ctx context.Context, s *settings) (*Engine, error) {
	node, err := network.New(ctx, network.Config{
		DHTConn: s.DHTConn, QUICConn: s.QUICConn,
		ListenDHT: s.ListenDHT, ListenQUIC: s.ListenQUIC,
		Bootstrap: s.Bootstrap, Logger: s.Logger,
		QueryResendDelay: s.QueryResendDelay,
	})
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
	e.status = Status{
		PublicKey: s.pub.String(), App: s.App, Channel: s.Channel, Platform: s.Platform,
		CurrentVersion: s.version.String(), DHTAddr: node.DHTAddr().String(), QUICAddr: node.QUICAddr().String(),
		Phase: "idle",
	}
	e.sys = s.ActorSystem
	if e.sys == nil {
		logger := s.Logger
		e.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
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

// appFromPath is the default app name: the artifact's base name.
func appFromPath(p string) string { return filepath.Base(p) }

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

// confirmHealth finishes an install that restarted into this version: it
// confirms once the health check passes, or rolls back and restarts into the
// old version when it fails. A rollback found at boot is reported.
func (e *Engine) confirmHealth(b installer.BootResult) {
	switch b.State {
	case installer.BootRolledBack:
		e.events.emit(Failed{Stage: "installer", Err: fmt.Errorf("version %s rolled back: %w", b.Pending.Version, b.Reason)})
		if b.Restart && e.cfg.Exec != nil {
			go e.cfg.Exec(b.Pending.Target, os.Args, os.Environ())
		}
		return
	case installer.BootTrial:
	default:
		return
	}
	check, exec, now := e.cfg.HealthCheck, e.cfg.Exec, e.cfg.Now
	if exec == nil {
		exec = installer.ExecSelf
	}
	go func() {
		if check != nil {
			ctx, cancel := context.WithDeadline(context.Background(), b.Pending.Deadline)
			defer cancel()
			if err := check(ctx); err != nil {
				e.cfg.Logger.Error("engine: health check failed; rolling back", "version", b.Pending.Version, "err", err)
				if rerr := b.RollBack(err, now()); rerr != nil {
					e.cfg.Logger.Error("engine: roll back", "err", rerr)
					return
				}
				e.events.emit(Failed{Stage: "installer", Err: fmt.Errorf("version %s failed its health check and was rolled back: %w", b.Pending.Version, err)})
				exec(b.Pending.Target, os.Args, os.Environ())
				return
			}
		}
		if err := b.Confirm(); err != nil {
			e.cfg.Logger.Error("engine: confirm install", "err", err)
		}
	}()
}

// Events returns the node's events, in order. The channel is closed by Stop.
func (e *Engine) Events() <-chan Event { return e.events.out }

// Status returns a snapshot of the node's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

func (e *Engine) update(f func(*Status)) {
	e.mu.Lock()
	f(&e.status)
	e.mu.Unlock()
}

// Node returns the node's network (DHT and QUIC); for tools and tests.
func (e *Engine) Node() *network.Node { return e.node }

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
