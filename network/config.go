package network

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// PublicRouters are the public Mainline DHT routers used when Config.Bootstrap
// is nil and Config.NoBootstrap is false. It is the production default only:
// tests, demos and simulations always pass their own starting nodes.
var PublicRouters = []string{
	"router.bittorrent.com:6881",
	"router.utorrent.com:6881",
	"dht.transmissionbt.com:6881",
	"dht.libtorrent.org:25401",
}

// Errors returned by this package, for errors.Is.
var (
	// ErrBadConfig means a Config field is invalid.
	ErrBadConfig = errors.New("network: bad config")
	// ErrClosed means the Node has been closed.
	ErrClosed = errors.New("network: node closed")
	// ErrNoNodes means there is no node to start a DHT traversal from: the
	// routing table is empty and there are no starting nodes.
	ErrNoNodes = errors.New("network: no DHT nodes known")

	// The three ways a DHT operation can fail to find or store a record,
	// told apart because their fixes differ.

	// ErrNoAnswer means no DHT node answered at all, not even the starting
	// nodes: the node is offline or its bootstrap nodes are wrong or down.
	ErrNoAnswer = errors.New("no DHT node answered")
	// ErrNotFound means DHT nodes answered, the lookup ran to its end, and
	// none of them holds a valid record for the key: wrong key, or nothing
	// published (or the record expired).
	ErrNotFound = errors.New("DHT nodes answered but none holds a record for this key")
	// ErrTimedOut means the operation's time ran out while DHT nodes were
	// still answering: the network is slow or churning, and more time (or
	// a retry) may succeed. It also matches context.DeadlineExceeded.
	ErrTimedOut = errors.New("the time ran out while DHT nodes were still answering")

	// ErrSuperseded means the DHT already holds a record with a higher seq
	// than the one being put.
	ErrSuperseded = errors.New("network: a newer record is in the DHT")
	// ErrNotStored means no DHT node accepted a put or an announce.
	ErrNotStored = errors.New("network: no DHT node accepted the item")
)

// Config configures a Node. The zero value is the production default: real
// UDP sockets on all interfaces and the public routers. Every field's default
// is given in its comment.
type Config struct {
	// DHTConn and QUICConn are the two sockets. Nil means listen on UDP at
	// ListenDHT / ListenQUIC. A conn passed in is not closed by Node.Close
	// (its read deadline is used to stop the readers, as quic-go does); a
	// conn the Node opened is closed. The DHT's conn must not be given a read
	// deadline by anyone else.
	DHTConn, QUICConn net.PacketConn
	// ListenDHT and ListenQUIC are UDP listen addresses used when the conn is
	// nil. Default ":0". Tests pass "127.0.0.1:0".
	ListenDHT, ListenQUIC string

	// PortFile, when set, names a file that keeps the ports the node
	// listened on: a restarted node listens on them again when ListenDHT or
	// ListenQUIC asks for any port (":0", "127.0.0.1:0") and they are free,
	// so its announced address stays true. Default none.
	PortFile string

	// Bootstrap lists host:port starting nodes. Nil means PublicRouters
	// unless NoBootstrap is set. Host names are resolved when a traversal
	// needs them (only while the routing table is empty).
	Bootstrap []string
	// NoBootstrap starts a node with no starting nodes at all, such as the
	// first node of a private network. Bootstrap is then ignored.
	NoBootstrap bool

	// Logger receives the node's logs, including the DHT library's, which are
	// bridged to it. Nil means silent.
	Logger *slog.Logger

	// NodeID fixes the DHT node ID. Nil means random.
	NodeID *[20]byte

	// QueryResendDelay is how long a query waits for its answer before it is
	// sent again, and after the last send before it fails, so a query to a
	// departed node costs QuerySends × QueryResendDelay. Default 1s (the
	// library's 2s made every dead node on a churning DHT cost 4s); lower it
	// on fast or lossy simulated networks.
	QueryResendDelay time.Duration
	// QuerySends is how many times this package's queries (get, put,
	// get_peers, announce_peer, pings and walks in Bootstrap) are sent before
	// they fail. Default 2. The library's own bootstrap sends once.
	QuerySends int
	// SendRate limits the packets per second this node's DHT sends (queries
	// wait, replies over the limit are dropped). Default 250. Each Node has
	// its own limiter; the library's process-wide one is never used.
	SendRate float64
	// SendBurst is the burst of that limiter. Default 50.
	SendBurst int

	// GetGrace is how long GetRecord keeps collecting answers after the
	// first valid record before it returns the newest. Default 500ms.
	GetGrace time.Duration

	// MaxItems bounds the BEP44 items this node stores for others. Default
	// 4096; the oldest is evicted first.
	MaxItems int
	// ItemTTL is how long a stored BEP44 item lives without being put again.
	// Default 2h.
	ItemTTL time.Duration
	// MaxSwarms bounds the swarm IDs (info-hashes) the peer store holds.
	// Default 4096; the least recently announced is evicted first.
	MaxSwarms int
	// MaxPeersPerSwarm bounds the peers stored per swarm. Default 512; the
	// least recently announced is evicted first.
	MaxPeersPerSwarm int
	// PeerTTL is how long an announced peer is kept. Default 30m (BEP5
	// practice: announcers re-announce well within it).
	PeerTTL time.Duration

	// DHTReadOnly makes the DHT server read-only (BEP43): its queries say
	// so, other nodes keep it out of their routing tables, and it answers
	// no query. For a node behind NAT, whose DHT socket nobody can query
	// unasked: listed in tables it would only cost others timeouts. Default
	// false.
	DHTReadOnly bool
	// Relay opts the node in to relaying for pairs of nodes behind NATs
	// that cannot punch (see Reach). Default false. RelayRate caps the
	// bytes per second it forwards for one node; 0 means
	// ReachConfig.RelayRate's default.
	Relay     bool
	RelayRate int

	// NoMaintainer stops Bootstrap from starting the library's table
	// maintainer (pings questionable nodes and refreshes buckets every
	// minute). Default false.
	NoMaintainer bool
}

// Defaults, as documented on Config.
const (
	defaultListen           = ":0"
	defaultQueryResendDelay = time.Second
	defaultQuerySends       = 2
	defaultSendRate         = 250
	defaultSendBurst        = 50
	defaultGetGrace         = 500 * time.Millisecond
	defaultMaxItems         = 4096
	defaultItemTTL          = 2 * time.Hour
	defaultMaxSwarms        = 4096
	defaultMaxPeersPerSwarm = 512
	defaultPeerTTL          = 30 * time.Minute
	// maxPeersPerReply caps the peers one get_peers answer carries, so the
	// answer stays well under one MTU (6 bytes each for IPv4).
	maxPeersPerReply = 50
)

// populate fills defaults into a copy of cfg and validates it.
func (cfg Config) populate() (Config, error) {
	if cfg.ListenDHT == "" {
		cfg.ListenDHT = defaultListen
	}
	if cfg.ListenQUIC == "" {
		cfg.ListenQUIC = defaultListen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DHTConn != nil && cfg.DHTConn == cfg.QUICConn {
		return cfg, fmt.Errorf("%w: DHTConn and QUICConn are the same conn; the DHT and QUIC need a socket each", ErrBadConfig)
	}
	if cfg.NoBootstrap {
		cfg.Bootstrap = nil
	} else if cfg.Bootstrap == nil {
		cfg.Bootstrap = PublicRouters
	}
	for _, hp := range cfg.Bootstrap {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return cfg, fmt.Errorf("%w: bootstrap node %q: %v", ErrBadConfig, hp, err)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || host == "" {
			return cfg, fmt.Errorf("%w: bootstrap node %q: want host:port with port 1-65535", ErrBadConfig, hp)
		}
	}
	type durDefault struct {
		name string
		p    *time.Duration
		def  time.Duration
	}
	for _, d := range []durDefault{
		{"QueryResendDelay", &cfg.QueryResendDelay, defaultQueryResendDelay},
		{"GetGrace", &cfg.GetGrace, defaultGetGrace},
		{"ItemTTL", &cfg.ItemTTL, defaultItemTTL},
		{"PeerTTL", &cfg.PeerTTL, defaultPeerTTL},
	} {
		if *d.p < 0 {
			return cfg, fmt.Errorf("%w: %s %v is negative", ErrBadConfig, d.name, *d.p)
		}
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	type intDefault struct {
		name string
		p    *int
		def  int
	}
	for _, d := range []intDefault{
		{"QuerySends", &cfg.QuerySends, defaultQuerySends},
		{"SendBurst", &cfg.SendBurst, defaultSendBurst},
		{"MaxItems", &cfg.MaxItems, defaultMaxItems},
		{"MaxSwarms", &cfg.MaxSwarms, defaultMaxSwarms},
		{"MaxPeersPerSwarm", &cfg.MaxPeersPerSwarm, defaultMaxPeersPerSwarm},
	} {
		if *d.p < 0 {
			return cfg, fmt.Errorf("%w: %s %d is negative", ErrBadConfig, d.name, *d.p)
		}
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if cfg.SendRate < 0 || cfg.SendRate != cfg.SendRate {
		return cfg, fmt.Errorf("%w: SendRate %v", ErrBadConfig, cfg.SendRate)
	}
	if cfg.SendRate == 0 {
		cfg.SendRate = defaultSendRate
	}
	return cfg, nil
}
