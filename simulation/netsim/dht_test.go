package netsim

import (
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anacrolix/dht/v2"
	alog "github.com/anacrolix/log"
	"golang.org/x/time/rate"
)

// TestDHTOverNetsim runs real anacrolix/dht servers over netsim in virtual
// time: every node bootstraps from the first one, then they ping each other.
// It checks the conns give the DHT what it needs (UDP addresses, a ReadFrom
// that fails only after Close) and that its traffic stays inside the subnet.
func TestDHTOverNetsim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nodes = 40
		n := newTestNetwork(t, Config{Seed: 1})
		defer n.Close()
		logger := alog.NewLogger("dht")
		logger.SetHandlers(alog.DiscardHandler)

		servers := make([]*dht.Server, nodes)
		var first net.Addr
		for i := range servers {
			h := addHost(t, n, Link{Up: 1 << 20, Down: 1 << 20, Latency: 10 * time.Millisecond, Loss: 0.01})
			conn := listen(t, h, 6881)
			cfg := dht.NewDefaultServerConfig()
			cfg.Conn = conn
			cfg.Logger = logger
			cfg.SendLimiter = rate.NewLimiter(rate.Inf, 0)
			cfg.QueryResendDelay = func() time.Duration { return 200 * time.Millisecond }
			if i == 0 {
				first = conn.LocalAddr()
			}
			boot := first
			cfg.StartingNodes = func() ([]dht.Addr, error) {
				return []dht.Addr{dht.NewAddr(boot)}, nil
			}
			s, err := dht.NewServer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			servers[i] = s
		}
		defer func() {
			for _, s := range servers {
				s.Close()
			}
		}()

		var wg sync.WaitGroup
		for _, s := range servers[1:] {
			wg.Go(func() {
				if _, err := s.Bootstrap(); err != nil {
					t.Errorf("bootstrap %s: %v", s.Addr(), err)
				}
			})
		}
		wg.Wait()
		if got := servers[0].NumNodes(); got < min(nodes/2, 20) {
			t.Errorf("bootstrap node knows %d nodes, want at least %d", got, min(nodes/2, 20))
		}
		// Pings with the loss switched off, so the outcome does not hang on
		// which packets the scheduler happens to line up with a loss draw.
		for _, h := range n.Hosts() {
			h.SetLoss(0)
		}
		for i, s := range servers {
			target := servers[(i+nodes/2)%nodes].Addr().(*net.UDPAddr)
			if res := s.Ping(target); res.Err != nil {
				t.Errorf("ping %s -> %s: %v", s.Addr(), target, res.Err)
			}
		}
		c := n.Counters()
		t.Logf("%d DHT nodes: %d packets sent, %d dropped, %v virtual", nodes, c.PacketsSent, c.PacketsDropped, time.Since(time.Unix(946684800, 0)))
		if c.PacketsRecv == 0 {
			t.Fatal("no DHT traffic")
		}
	})
}
