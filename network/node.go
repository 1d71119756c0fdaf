package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
)

// Node is one node's DHT server and QUIC transport. Its methods are safe for
// concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	server  *dht.Server
	dhtConn *guardedConn
	limiter *rate.Limiter
	peers   *peerStore
	live    *liveness
	recent  lastGet // the last record lookup's closest nodes, for a put
	kinds   queryKinds
	items   *itemStore
	local   *bep44.Wrapper // the server's item store, for local reads and writes
	want    []krpc.Want    // BEP32 node lists asked for: n4, plus n6 on an IPv6 socket

	quicConn    net.PacketConn
	ownQUICConn bool
	transport   *quic.Transport
	reach       *Reach // NAT traversal on the QUIC socket (reach.go)

	// boot holds a token while a Bootstrap runs: one at a time. A channel,
	// not a mutex, so a waiting Bootstrap can be cancelled, and so that in a
	// testing/synctest bubble a waiter counts as durably blocked (a goroutine
	// blocked on a mutex stops virtual time for everyone).
	boot           chan struct{}
	maintainerOnce sync.Once
	maintainerDone chan struct{} // closed when the table maintainer returns (or never ran)

	closeOnce sync.Once
	done      chan struct{} // closed by Close
	wgMu      sync.Mutex    // orders wg.Add against Close's wg.Wait
	wg        sync.WaitGroup
}

// track registers a background goroutine that Close waits for; it reports
// false once the node is closing.
func (n *Node) track() bool {
	n.wgMu.Lock()
	defer n.wgMu.Unlock()
	if n.closed() {
		return false
	}
	n.wg.Add(1)
	return true
}

// New opens the node's sockets (unless given) and starts the DHT server. It
// does not bootstrap: call Bootstrap.
func New(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.populate()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:            cfg,
		log:            cfg.Logger,
		limiter:        rate.NewLimiter(rate.Limit(cfg.SendRate), cfg.SendBurst),
		peers:          newPeerStore(cfg.MaxSwarms, cfg.MaxPeersPerSwarm, cfg.PeerTTL),
		items:          newItemStore(cfg.MaxItems),
		live:           newLiveness(deadTTL, maxDead),
		boot:           make(chan struct{}, 1),
		maintainerDone: make(chan struct{}),
		done:           make(chan struct{}),
	}
	n.local = bep44.NewWrapper(n.items, cfg.ItemTTL)
	n.peers.dead = n.live.isDead

	var savedDHT, savedQUIC int
	if cfg.PortFile != "" {
		savedDHT, savedQUIC = readPorts(cfg.PortFile)
	}
	dc, ownDHT := cfg.DHTConn, false
	if dc == nil {
		if dc, err = listenReusing(ctx, cfg.ListenDHT, savedDHT); err != nil {
			return nil, fmt.Errorf("listen DHT on %s: %w", cfg.ListenDHT, err)
		}
		ownDHT = true
	}
	qc, ownQUIC := cfg.QUICConn, false
	if qc == nil {
		if qc, err = listenReusing(ctx, cfg.ListenQUIC, savedQUIC); err != nil {
			if ownDHT {
				dc.Close()
			}
			return nil, fmt.Errorf("listen QUIC on %s: %w", cfg.ListenQUIC, err)
		}
		ownQUIC = true
	}
	n.dhtConn = newGuardedConn(dc, ownDHT, n.log, n.live)
	n.want = []krpc.Want{krpc.WantNodes}
	if !addrPortOfNet(dc.LocalAddr()).Addr().Is4() {
		n.want = append(n.want, krpc.WantNodes6)
	}
	n.quicConn, n.ownQUICConn = qc, ownQUIC

	sc := &dht.ServerConfig{
		Conn:          n.dhtConn,
		NoSecurity:    true,
		StartingNodes: n.startingNodes,
		OnQuery: func(m *krpc.Msg, source net.Addr) bool {
			if !fixQuery(m, source) {
				return false
			}
			n.peers.noteAnnounce(m, source)
			return true
		},
		QueryResendDelay: func() time.Duration { return cfg.QueryResendDelay },
		PeerStore:        n.peers,
		Store:            n.items,
		Exp:              cfg.ItemTTL,
		Logger:           dhtLogger(n.log),
		DefaultWant:      n.want,
		SendLimiter:      n.limiter,
		Passive:          cfg.DHTReadOnly,
	}
	if cfg.NodeID != nil {
		sc.NodeId = krpc.ID(*cfg.NodeID)
	} else {
		sc.NodeId = krpc.RandomNodeID()
	}
	if n.server, err = dht.NewServer(sc); err != nil {
		n.dhtConn.Close()
		if ownQUIC {
			qc.Close()
		}
		return nil, fmt.Errorf("start DHT server: %w", err)
	}
	n.transport = &quic.Transport{Conn: qc}
	n.reach = NewReach(n.transport, n.QUICAddr(), ReachConfig{Logger: n.log, Relay: cfg.Relay, RelayRate: cfg.RelayRate})
	if cfg.PortFile != "" {
		d, q := int(addrPortOfNet(dc.LocalAddr()).Port()), int(addrPortOfNet(qc.LocalAddr()).Port())
		if d != savedDHT || q != savedQUIC {
			if err := writePorts(cfg.PortFile, d, q); err != nil {
				n.log.Warn("save ports", "file", cfg.PortFile, "err", err)
			}
		}
	}
	n.log = n.log.With("dht", n.DHTAddr().String())
	return n, nil
}

// fixQuery is the server's OnQuery hook. The server answers find_node and get
// with the nodes closest to A.InfoHash, which those queries leave zero (their
// target is A.Target), so it copies the target. It drops queries without
// arguments: the server dereferences them for announce_peer and put.
func fixQuery(m *krpc.Msg, _ net.Addr) bool {
	if m.A == nil {
		return false
	}
	switch m.Q {
	case "find_node", "get":
		m.A.InfoHash = m.A.Target
	}
	return true
}

// startingNodes resolves Config.Bootstrap. The server asks for them only
// when its routing table is empty.
func (n *Node) startingNodes() ([]dht.Addr, error) {
	if len(n.cfg.Bootstrap) == 0 {
		return nil, ErrNoNodes
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var out []dht.Addr
	var lastErr error
	for _, hp := range n.cfg.Bootstrap {
		host, port, _ := net.SplitHostPort(hp) // validated in populate
		p, _ := netip.ParseAddrPort(net.JoinHostPort(host, port))
		if p.IsValid() {
			out = append(out, dht.NewAddr(net.UDPAddrFromAddrPort(p)))
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			lastErr = err
			n.log.Debug("resolve bootstrap node", "node", hp, "err", err)
			continue
		}
		for _, ip := range ips {
			ap, err := netip.ParseAddrPort(net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				out = append(out, dht.NewAddr(net.UDPAddrFromAddrPort(ap)))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no bootstrap node resolved (last error: %v)", ErrNoNodes, lastErr)
	}
	return out, nil
}

// Transport returns the QUIC transport over the node's QUIC socket. The node
// owns it: do not close it, close the Node.
func (n *Node) Transport() *quic.Transport { return n.transport }

// DHTAddr returns the local address of the DHT socket.
func (n *Node) DHTAddr() netip.AddrPort { return addrPortOfNet(n.dhtConn.LocalAddr()) }

// QUICAddr returns the local address of the QUIC socket; its port is the one
// Announce publishes.
func (n *Node) QUICAddr() netip.AddrPort { return addrPortOfNet(n.quicConn.LocalAddr()) }

// ID returns the node's DHT node ID.
func (n *Node) ID() [20]byte { return n.server.ID() }

// TableSize returns how many nodes the routing table holds.
func (n *Node) TableSize() int { return n.server.NumNodes() }

// DroppedPackets returns how many received DHT packets were dropped because
// they do not decode as KRPC (some would crash the decoder).
func (n *Node) DroppedPackets() int64 { return n.dhtConn.dropped.Load() }

// Stats is a snapshot of a node's DHT state.
type Stats struct {
	TableNodes int // nodes in the routing table
	GoodNodes  int // of which answered recently (BEP5 "good")
	Items      int // BEP44 items stored for others
	// DeadNodes counts the nodes masked as gone: they left an query
	// unanswered and have not been heard from since.
	DeadNodes int
	// OutboundQueries counts the queries this node has started (resends
	// not counted), the library's own (table maintenance) included.
	OutboundQueries int64
	// QueriesByKind counts, by KRPC method, the queries this package
	// started (lookups, puts, announces, bootstraps); OutboundQueries
	// minus their sum is the library's table maintenance.
	QueriesByKind map[string]int64
	// DroppedPackets counts received packets dropped because they do not
	// decode as KRPC; ReadErrors counts failed reads of the DHT conn before
	// Close.
	DroppedPackets, ReadErrors int64
	// PeersCapped counts announced peers the peer store dropped to keep at
	// most a few ports of one address per swarm (an announcement flood).
	PeersCapped int64
}

// Stats returns a snapshot of the node's DHT state.
func (n *Node) Stats() Stats {
	ss := n.server.Stats()
	return Stats{
		TableNodes:      ss.Nodes,
		GoodNodes:       ss.GoodNodes,
		Items:           n.items.len(),
		DeadNodes:       n.live.len(),
		OutboundQueries: ss.OutboundQueriesAttempted,
		QueriesByKind:   n.kinds.snapshot(),
		DroppedPackets:  n.dhtConn.dropped.Load(),
		ReadErrors:      n.dhtConn.readErrors.Load(),
		PeersCapped:     n.peers.capped.Load(),
	}
}

// queryKinds counts queries by method.
type queryKinds struct {
	mu sync.Mutex
	n  map[string]int64
}

func (k *queryKinds) add(q string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n == nil {
		k.n = make(map[string]int64)
	}
	k.n[q]++
}

func (k *queryKinds) snapshot() map[string]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.n)
}

func addrPortOfNet(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (n *Node) closed() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// opContext returns a context that ends with ctx or when the node closes.
// Call cancel when the operation is over.
func (n *Node) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Close stops the DHT server and the QUIC transport, closes the conns the
// node opened and waits for the node's goroutines. The library may leave a
// few goroutines that end within milliseconds (replies being written).
func (n *Node) Close() error {
	var errs []error
	n.closeOnce.Do(func() {
		n.wgMu.Lock()
		close(n.done)
		n.wgMu.Unlock()
		n.server.Close()
		if err := n.dhtConn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close DHT conn: %w", err))
		}
		n.boot <- struct{}{} // wait for a running Bootstrap
		n.maintainerOnce.Do(func() { close(n.maintainerDone) })
		<-n.boot
		<-n.maintainerDone
		n.wg.Wait()
		n.reach.Close()
		if err := n.transport.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close QUIC transport: %w", err))
		}
		if n.ownQUICConn {
			if err := n.quicConn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close QUIC conn: %w", err))
			}
		}
	})
	return errors.Join(errs...)
}
