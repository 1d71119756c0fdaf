package network_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/simulation/netsim"
)

const reachALPN = "reach-test"

// inBubble runs f in a synctest bubble, or in real time under the race
// detector (whose runtime aborts in bubbles, see raceEnabled).
func inBubble(t *testing.T, f func(t *testing.T)) {
	if raceEnabled {
		f(t)
		return
	}
	synctest.Test(t, f)
}

func reachTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, NextProtos: []string{reachALPN}}
	client = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{reachALPN}}
	return server, client
}

// tapConn records whether a marker ever crossed a conn.
type tapConn struct {
	net.PacketConn
	marker []byte
	seen   atomic.Bool
	bytes  atomic.Int64
}

func (c *tapConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		c.bytes.Add(int64(n))
		if bytes.Contains(b[:n], c.marker) {
			c.seen.Store(true)
		}
	}
	return n, a, err
}
func (c *tapConn) SetReadBuffer(int) error  { return nil }
func (c *tapConn) SetWriteBuffer(int) error { return nil }

// reachNode is a host with a QUIC transport and a Reach on its socket.
type reachNode struct {
	host  *netsim.Host
	tap   *tapConn
	tr    *quic.Transport
	reach *network.Reach
	ln    *quic.Listener
}

var marker = []byte("end-to-end-secret-0123456789")

func newReachNode(t *testing.T, sim *netsim.Network, nat netsim.NATType, cfg network.ReachConfig, serverTLS *tls.Config) *reachNode {
	t.Helper()
	h, err := sim.AddHostNAT(netsim.Link{Latency: 10 * time.Millisecond}, netsim.NAT{Type: nat})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := h.ListenPacket(4433)
	if err != nil {
		t.Fatal(err)
	}
	tap := &tapConn{PacketConn: pc, marker: marker}
	tr := &quic.Transport{Conn: tap}
	ln, err := tr.Listen(serverTLS, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	local := netip.AddrPortFrom(h.Addr(), 4433)
	n := &reachNode{host: h, tap: tap, tr: tr, reach: network.NewReach(tr, local, cfg), ln: ln}
	return n
}

func (n *reachNode) close() {
	n.reach.Close()
	n.ln.Close()
	n.tr.Close()
}

// exchange opens a stream from a to b's accepted connection, sends the
// marker both ways, and closes both connections.
func exchange(ctx context.Context, client *quic.Conn, accept func(context.Context) (*quic.Conn, error)) error {
	errc := make(chan error, 1)
	go func() {
		sc, err := accept(ctx)
		if err != nil {
			errc <- err
			return
		}
		defer sc.CloseWithError(0, "")
		s, err := sc.AcceptStream(ctx)
		if err != nil {
			errc <- err
			return
		}
		got, err := io.ReadAll(s)
		if err == nil && !bytes.Equal(got, marker) {
			err = fmt.Errorf("server got %q", got)
		}
		if err == nil {
			_, err = s.Write(marker)
			s.Close()
		}
		if err == nil {
			<-sc.Context().Done() // the client closes once it has read
		}
		errc <- err
	}()
	defer client.CloseWithError(0, "")
	s, err := client.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	if _, err := s.Write(marker); err != nil {
		return err
	}
	s.Close()
	got, err := io.ReadAll(s)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, marker) {
		return fmt.Errorf("client got %q", got)
	}
	client.CloseWithError(0, "")
	return <-errc
}

// TestNATMatrix connects a node behind every NAT type to a node behind every
// NAT type over netsim, with real QUIC: both register at a reachable node C
// (rendezvous and relay) and observe themselves through C and D; then A
// dials B directly when B has no NAT, punches when the mappings make it
// worth trying, and falls back to a relay through C. The punch must succeed
// exactly where the types allow it; every pair must connect, and the relay
// must never see the plaintext.
func TestNATMatrix(t *testing.T) {
	types := netsim.NATTypes()
	// punchable[a][b]: A behind a, initiating, B behind b.
	const N, P, S = netsim.NATNone, netsim.NATPortRestricted, netsim.NATSymmetric
	relayed := map[[2]netsim.NATType]bool{{P, S}: true, {S, P}: true, {S, S}: true}
	var mu sync.Mutex
	got := make(map[[2]netsim.NATType]network.Method)
	for _, ta := range types {
		for _, tb := range types {
			t.Run(ta.String()+"/"+tb.String(), func(t *testing.T) {
				inBubble(t, func(t *testing.T) {
					m := connectPair(t, ta, tb)
					mu.Lock()
					got[[2]netsim.NATType{ta, tb}] = m
					mu.Unlock()
					want := network.Punch
					switch {
					case tb == N:
						want = network.Direct
					case relayed[[2]netsim.NATType{ta, tb}]:
						want = network.Relay
					}
					if m != want {
						t.Errorf("%s → %s connected by %s, want %s", ta, tb, m, want)
					}
				})
			})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s", "A \\ B")
	for _, tb := range types {
		fmt.Fprintf(&b, "%-20s", tb)
	}
	for _, ta := range types {
		fmt.Fprintf(&b, "\n%-20s", ta)
		for _, tb := range types {
			fmt.Fprintf(&b, "%-20s", got[[2]netsim.NATType{ta, tb}])
		}
	}
	t.Logf("how A reached B:\n%s", b.String())
}

// connectPair sets up the pair and returns how A reached B.
func connectPair(t *testing.T, ta, tb netsim.NATType) network.Method {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sim, err := netsim.New(netsim.Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	serverTLS, clientTLS := reachTLS(t)
	c := newReachNode(t, sim, netsim.NATNone, network.ReachConfig{Relay: true}, serverTLS)
	d := newReachNode(t, sim, netsim.NATNone, network.ReachConfig{}, serverTLS)
	// A failed punch costs PunchTimeout: keep it short for the real-time
	// run under the race detector.
	a := newReachNode(t, sim, ta, network.ReachConfig{PunchTimeout: time.Second}, serverTLS)
	b := newReachNode(t, sim, tb, network.ReachConfig{PunchTimeout: time.Second}, serverTLS)
	defer func() {
		for _, n := range []*reachNode{a, b, c, d} {
			n.close()
		}
	}()
	cAddr := netip.AddrPortFrom(c.host.Addr(), 4433)
	dAddr := netip.AddrPortFrom(d.host.Addr(), 4433)
	for _, n := range []*reachNode{a, b} {
		for _, obs := range []netip.AddrPort{cAddr, dAddr} {
			seen, err := n.reach.Observe(ctx, obs)
			if err != nil {
				t.Fatalf("observe via %s: %v", obs, err)
			}
			if seen.Addr() != n.host.PublicAddr() {
				t.Fatalf("%s seen at %s, public address is %s", n.host, seen, n.host.PublicAddr())
			}
		}
	}
	_, ma := a.reach.Public()
	_, mb := b.reach.Public()
	wantMapping := func(typ netsim.NATType) network.Mapping {
		switch typ {
		case netsim.NATNone:
			return network.MappingNone
		case netsim.NATSymmetric:
			return network.MappingVaries
		}
		return network.MappingStable
	}
	if ma != wantMapping(ta) || mb != wantMapping(tb) {
		t.Fatalf("mappings learnt: A %s, B %s; want %s, %s", ma, mb, wantMapping(ta), wantMapping(tb))
	}
	// B as C sees it: what B's announcement would name.
	bAtC, err := b.reach.Observe(ctx, cAddr)
	if err != nil {
		t.Fatal(err)
	}

	dial := func(tr *quic.Transport, to net.Addr) (*quic.Conn, error) {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		return tr.Dial(dctx, to, clientTLS, &quic.Config{})
	}
	method := network.Plan(ma, mb)
	switch method {
	case network.Direct:
		qc, err := dial(a.tr, net.UDPAddrFromAddrPort(bAtC))
		if err != nil {
			t.Fatalf("direct dial: %v", err)
		}
		if err := exchange(ctx, qc, b.ln.Accept); err != nil {
			t.Fatalf("direct: %v", err)
		}
		return network.Direct
	case network.Punch:
		to, err := a.reach.Punch(ctx, cAddr, bAtC)
		if err == nil {
			qc, err := dial(a.tr, net.UDPAddrFromAddrPort(to))
			if err != nil {
				t.Fatalf("punched to %s, then dial: %v", to, err)
			}
			if err := exchange(ctx, qc, b.ln.Accept); err != nil {
				t.Fatalf("punched: %v", err)
			}
			return network.Punch
		}
		if !errors.Is(err, network.ErrPunchFailed) {
			t.Fatalf("punch: %v", err)
		}
	}

	// Relay through C.
	before := c.tap.bytes.Load()
	ra, err := a.reach.DialRelay(ctx, cAddr, bAtC)
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	var rb *network.RelayConn
	select {
	case rb = <-b.reach.Incoming():
	case <-ctx.Done():
		t.Fatal("B got no relayed conn")
	}
	qconf := &quic.Config{DisablePathMTUDiscovery: true}
	ta2, tb2 := &quic.Transport{Conn: ra}, &quic.Transport{Conn: rb}
	defer ta2.Close()
	defer tb2.Close()
	ln, err := tb2.Listen(serverTLS, qconf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	qc, err := ta2.Dial(dctx, rb.LocalAddr(), clientTLS, qconf)
	if err != nil {
		t.Fatalf("dial over relay: %v", err)
	}
	if err := exchange(ctx, qc, ln.Accept); err != nil {
		t.Fatalf("relayed: %v", err)
	}
	if c.tap.seen.Load() {
		t.Fatal("the relay saw the plaintext")
	}
	if n := c.tap.bytes.Load() - before; n < 2000 {
		t.Fatalf("only %d bytes reached the relay: the QUIC handshake did not cross it", n)
	}
	return network.Relay
}

// TestReachRefusals: a rendezvous refuses to introduce a node it never
// heard from, a node that did not opt in refuses to relay, and a relay
// refuses a target that is not registered.
func TestReachRefusals(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sim, err := netsim.New(netsim.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		serverTLS, _ := reachTLS(t)
		c := newReachNode(t, sim, netsim.NATNone, network.ReachConfig{}, serverTLS)
		r := newReachNode(t, sim, netsim.NATNone, network.ReachConfig{Relay: true}, serverTLS)
		a := newReachNode(t, sim, netsim.NATPortRestricted, network.ReachConfig{}, serverTLS)
		b := newReachNode(t, sim, netsim.NATPortRestricted, network.ReachConfig{}, serverTLS)
		defer func() {
			for _, n := range []*reachNode{a, b, c, r} {
				n.close()
			}
		}()
		cAddr := netip.AddrPortFrom(c.host.Addr(), 4433)
		rAddr := netip.AddrPortFrom(r.host.Addr(), 4433)
		bAtC, err := b.reach.Observe(ctx, cAddr)
		if err != nil {
			t.Fatal(err)
		}
		stranger := netip.AddrPortFrom(b.host.PublicAddr(), 1)
		if _, err := a.reach.Punch(ctx, cAddr, stranger); !errors.Is(err, network.ErrNotRegistered) {
			t.Errorf("punch to an unregistered node: %v", err)
		}
		if _, err := a.reach.DialRelay(ctx, cAddr, bAtC); !errors.Is(err, network.ErrRelayRefused) {
			t.Errorf("relay through a node that did not opt in: %v", err)
		}
		if _, err := a.reach.DialRelay(ctx, rAddr, bAtC); !errors.Is(err, network.ErrRelayRefused) {
			t.Errorf("relay to a node not registered at the relay: %v", err)
		}
		// B is registered at C only: a punch via C to B's address as R
		// would see it fails the same way.
		if _, err := a.reach.Punch(ctx, rAddr, bAtC); !errors.Is(err, network.ErrNotRegistered) {
			t.Errorf("punch via a rendezvous B never registered with: %v", err)
		}
	})
}

// TestRelayCap: a relay forwards at most its per-node rate (plus one
// second of burst) for a sender, however fast QUIC would go.
func TestRelayCap(t *testing.T) {
	if raceEnabled {
		t.Skip("virtual-time figure")
	}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		sim, err := netsim.New(netsim.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		serverTLS, clientTLS := reachTLS(t)
		const capRate = 64 << 10
		r := newReachNode(t, sim, netsim.NATNone, network.ReachConfig{Relay: true, RelayRate: capRate}, serverTLS)
		a := newReachNode(t, sim, netsim.NATSymmetric, network.ReachConfig{}, serverTLS)
		b := newReachNode(t, sim, netsim.NATSymmetric, network.ReachConfig{}, serverTLS)
		defer func() {
			for _, n := range []*reachNode{a, b, r} {
				n.close()
			}
		}()
		rAddr := netip.AddrPortFrom(r.host.Addr(), 4433)
		bAtR, err := b.reach.Observe(ctx, rAddr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.reach.Observe(ctx, rAddr); err != nil {
			t.Fatal(err)
		}
		ra, err := a.reach.DialRelay(ctx, rAddr, bAtR)
		if err != nil {
			t.Fatal(err)
		}
		rb := <-b.reach.Incoming()
		qconf := &quic.Config{DisablePathMTUDiscovery: true}
		trA, trB := &quic.Transport{Conn: ra}, &quic.Transport{Conn: rb}
		defer trA.Close()
		defer trB.Close()
		ln, err := trB.Listen(serverTLS, qconf)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		const size = 1 << 20
		start := time.Now()
		recvd := make(chan int64, 1)
		go func() {
			sc, err := ln.Accept(ctx)
			if err != nil {
				recvd <- -1
				return
			}
			s, err := sc.AcceptStream(ctx)
			if err != nil {
				recvd <- -1
				return
			}
			n, _ := io.Copy(io.Discard, s)
			recvd <- n
			<-sc.Context().Done()
		}()
		qc, err := trA.Dial(ctx, rb.LocalAddr(), clientTLS, qconf)
		if err != nil {
			t.Fatal(err)
		}
		s, err := qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if n := <-recvd; n != size {
			t.Fatalf("received %d of %d bytes", n, size)
		}
		qc.CloseWithError(0, "")
		elapsed := time.Since(start)
		// The payload alone, at the cap after a one-second burst.
		if min := time.Duration(float64(size-capRate) / capRate * float64(time.Second)); elapsed < min {
			t.Fatalf("1 MiB crossed a %d B/s relay in %v, faster than the cap allows (%v)", capRate, elapsed, min)
		}
		t.Logf("1 MiB through a %d KiB/s relay in %v (virtual)", capRate>>10, elapsed)
	})
}

// TestConnectRelayFallback: a node behind a symmetric NAT keeps a
// reservation with a relay that offered one and names it to its other
// rendezvous; a node behind a port-restricted NAT, whose punch through that
// rendezvous cannot work, learns the relay from it and connects through
// the relay; the two ends run QUIC over it. Without a relay to fall back
// to, Connect to a node known to be behind NAT fails with ErrUnreachable.
func TestConnectRelayFallback(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sim, err := netsim.New(netsim.Config{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		serverTLS, clientTLS := reachTLS(t)
		r := newReachNode(t, sim, netsim.NATNone, network.ReachConfig{Relay: true}, serverTLS)
		m := newReachNode(t, sim, netsim.NATNone, network.ReachConfig{}, serverTLS)
		n := newReachNode(t, sim, netsim.NATSymmetric, network.ReachConfig{PunchTimeout: time.Second}, serverTLS)
		x := newReachNode(t, sim, netsim.NATPortRestricted, network.ReachConfig{PunchTimeout: time.Second}, serverTLS)
		defer func() {
			for _, nd := range []*reachNode{n, x, m, r} {
				nd.close()
			}
		}()
		rAddr := netip.AddrPortFrom(r.host.Addr(), 4433)
		mAddr := netip.AddrPortFrom(m.host.Addr(), 4433)
		for _, nd := range []*reachNode{n, x} {
			for _, obs := range []netip.AddrPort{rAddr, mAddr} {
				if _, err := nd.reach.Observe(ctx, obs); err != nil {
					t.Fatal(err)
				}
			}
		}
		n.reach.Tend()
		if got := n.reach.Reservation(); got != rAddr {
			t.Fatalf("reservation %v, want the relay %v", got, rAddr)
		}
		if got := m.reach.Reservation(); got.IsValid() {
			t.Fatalf("a node without NAT holds reservation %v", got)
		}
		// The next observe names the relay to the rendezvous.
		nAtM, err := n.reach.Observe(ctx, mAddr)
		if err != nil {
			t.Fatal(err)
		}
		h, ok := m.reach.HintFor(nAtM)
		if !ok || !h.NAT || !h.Varies || h.Relay != rAddr || !h.AtRelay.IsValid() || h.AtRelay == nAtM {
			t.Fatalf("rendezvous hint for the symmetric node: %+v, %v", h, ok)
		}

		p, err := x.reach.Connect(ctx, nAtM, network.Hint{NAT: true}, []netip.AddrPort{mAddr})
		if err != nil {
			t.Fatal(err)
		}
		if p.Method != network.Relay || p.Conn == nil {
			t.Fatalf("connected by %s, want relay", p.Method)
		}
		var rb *network.RelayConn
		select {
		case rb = <-n.reach.Incoming():
		case <-ctx.Done():
			t.Fatal("no relayed conn arrived")
		}
		qconf := &quic.Config{}
		trA, trB := &quic.Transport{Conn: p.Conn}, &quic.Transport{Conn: rb}
		defer trA.Close()
		defer trB.Close()
		ln, err := trB.Listen(serverTLS, qconf)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		qc, err := trA.Dial(ctx, rb.LocalAddr(), clientTLS, qconf)
		if err != nil {
			t.Fatalf("dial over relay: %v", err)
		}
		if err := exchange(ctx, qc, ln.Accept); err != nil {
			t.Fatalf("relayed: %v", err)
		}
		if r.tap.seen.Load() {
			t.Fatal("the relay saw the plaintext")
		}
		if st := x.reach.Stats(); st.Relayed != 1 || st.PunchFailed != 1 {
			t.Errorf("dialler stats %+v", st)
		}
		if st := r.reach.Stats(); st.RelayBytes < 2000 {
			t.Errorf("relay forwarded %d bytes", st.RelayBytes)
		}

		// A node without NAT, registered at the relay: the rendezvous says
		// so, and the path is direct, with no punch.
		for range 2 { // the second request carries the mapping the first taught
			if _, err := m.reach.Observe(ctx, rAddr); err != nil {
				t.Fatal(err)
			}
		}
		if p, err := x.reach.Connect(ctx, mAddr, network.Hint{}, []netip.AddrPort{rAddr}); err != nil || p.Method != network.Direct || p.Addr != mAddr {
			t.Errorf("connect to a node without NAT: %+v, %v", p, err)
		}

		// A node known to be behind NAT, with no rendezvous and no relay.
		stranger := netip.AddrPortFrom(x.host.PublicAddr(), 1)
		if _, err := n.reach.Connect(ctx, stranger, network.Hint{NAT: true}, nil); !errors.Is(err, network.ErrUnreachable) {
			t.Errorf("connect without a way: %v", err)
		}
	})
}
