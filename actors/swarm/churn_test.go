package swarm

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/wire"
)

// TestConnectionChurnKeepsHonestPeer: a peer opening 50 new connections a
// second under fresh identities, from another /24 of 127.0.0.0/8, against
// a seed whose inbound connections are full, neither evicts an honest
// downloader nor slows its fetches past its unattacked time plus 5 s.
// Before, each newcomer evicted the oldest inbound peer, so the honest
// connection went within the first second.
func TestConnectionChurnKeepsHonestPeer(t *testing.T) {
	if testing.Short() {
		// Fifty TLS handshakes a second with fresh certificates need more
		// CPU than -race (CI's -short run) leaves: the churn never happens.
		t.Skip("connection churn is not run with -short")
	}
	tr := newTestRelease(t)
	r := newRig(t, Config{MaxPeers: 2}, tr) // 4 inbound connections at most
	honest := r.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := honest.Send(ctx, &wire.Hello{}); err != nil {
		t.Fatal(err)
	}
	calm := fetchAll(t, honest, tr)

	// The churner: its own socket on 127.0.1.2, a fresh key per connection.
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, 2)})
	if err != nil {
		t.Skipf("cannot bind 127.0.1.2: %v", err)
	}
	qt := &quic.Transport{Conn: uc}
	var (
		mu    sync.Mutex
		conns []*wire.Conn
		made  atomic.Int32 // connections established
		tried atomic.Int32 // dials started
	)
	actx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	var dials sync.WaitGroup
	go func() {
		defer close(done)
		defer dials.Wait()
		tick := time.NewTicker(20 * time.Millisecond) // 50 a second
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-actx.Done():
				return
			}
			tried.Add(1)
			dials.Go(func() {
				dctx, dcancel := context.WithTimeout(actx, 5*time.Second)
				defer dcancel()
				c, err := wire.Dial(dctx, qt, net.UDPAddrFromAddrPort(r.node.QUICAddr()), newKey(t), r.id(), wire.Limits{})
				if err != nil {
					return
				}
				made.Add(1)
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close(wire.CodeNone, "")
		}
		mu.Unlock()
		qt.Close()
		uc.Close()
	})

	// Fetch the release again and again while the churn goes on, for two
	// seconds of it (a hundred dials).
	start := time.Now()
	rounds := 0
	for tried.Load() < 100 || made.Load() < 20 {
		if took := fetchAll(t, honest, tr); took > calm+5*time.Second {
			t.Fatalf("a fetch took %v under churn, %v unattacked", took, calm)
		}
		rounds++
		if time.Since(start) > waitFor/2 {
			t.Fatalf("the churner made only %d connections (%d dials) in %v", made.Load(), tried.Load(), time.Since(start))
		}
	}
	select {
	case <-honest.Done():
		t.Fatalf("the honest connection was dropped: %v", honest.Err())
	default:
	}
	t.Logf("%d honest fetches during %d dials (%d connected) in %v; unattacked fetch %v", rounds, tried.Load(), made.Load(), time.Since(start), calm)
}
