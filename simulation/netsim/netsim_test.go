package netsim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// newTestNetwork starts a network that is closed when the test ends. Inside
// a synctest bubble, close it yourself before the bubble function returns.
func newTestNetwork(t testing.TB, cfg Config) *Network {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func addHost(t testing.TB, n *Network, l Link) *Host {
	t.Helper()
	h, err := n.AddHost(l)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func listen(t testing.TB, h *Host, port int) net.PacketConn {
	t.Helper()
	c, err := h.ListenPacket(port)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t testing.TB, c net.PacketConn, to net.PacketConn, payload []byte) {
	t.Helper()
	if _, err := c.WriteTo(payload, to.LocalAddr()); err != nil {
		t.Fatalf("write %s -> %s: %v", c.LocalAddr(), to.LocalAddr(), err)
	}
}

// recv reads one packet or fails after wait (virtual time in a bubble).
func recv(t testing.TB, c net.PacketConn, wait time.Duration) ([]byte, net.Addr) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 65536)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read on %s: %v", c.LocalAddr(), err)
	}
	return buf[:n], from
}

// expectNothing asserts no packet arrives within wait.
func expectNothing(t testing.TB, c net.PacketConn, wait time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 65536)
	n, from, err := c.ReadFrom(buf)
	if err == nil {
		t.Fatalf("unexpected packet on %s from %s: %q", c.LocalAddr(), from, buf[:n])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on %s: %v, want deadline exceeded", c.LocalAddr(), err)
	}
}

func TestAddressesAndSubnet(t *testing.T) {
	n := newTestNetwork(t, Config{})
	if got := n.Subnet(); got != netip.MustParsePrefix("127.20.0.0/16") {
		t.Fatalf("default subnet %s", got)
	}
	a, b := addHost(t, n, Link{}), addHost(t, n, Link{})
	if a.Addr() != netip.MustParseAddr("127.20.0.1") || b.Addr() != netip.MustParseAddr("127.20.0.2") {
		t.Fatalf("addresses %s %s", a.Addr(), b.Addr())
	}
	if n.Host(b.Addr()) != b || n.Host(netip.MustParseAddr("127.20.0.3")) != nil || n.Host(netip.MustParseAddr("127.20.0.0")) != nil {
		t.Fatal("Host lookup wrong")
	}

	small := newTestNetwork(t, Config{Subnet: netip.MustParsePrefix("127.30.0.0/30")})
	addHost(t, small, Link{})
	addHost(t, small, Link{})
	if _, err := small.AddHost(Link{}); !errors.Is(err, ErrSubnetFull) {
		t.Fatalf("third host in a /30: %v, want ErrSubnetFull", err)
	}

	for _, bad := range []string{"126.0.0.0/8", "126.0.0.0/7", "0.0.0.0/0", "::1/128", "127.1.2.3/31"} {
		if _, err := New(Config{Subnet: netip.MustParsePrefix(bad)}); err == nil {
			t.Errorf("subnet %s accepted", bad)
		}
	}
	if _, err := New(Config{Subnet: netip.MustParsePrefix("126.0.0.0/8")}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("subnet 126/8: %v, want ErrNotLoopback", err)
	}
}

func TestLinkValidation(t *testing.T) {
	n := newTestNetwork(t, Config{})
	for _, l := range []Link{{Up: -1}, {Down: -1}, {Latency: -1}, {Loss: 1.5}, {Loss: math.NaN()}, {MTU: 100}, {MTU: 70000}} {
		if _, err := n.AddHost(l); !errors.Is(err, ErrInvalidLink) {
			t.Errorf("AddHost(%+v): %v, want ErrInvalidLink", l, err)
		}
	}
	h := addHost(t, n, Link{})
	if err := h.SetLoss(-0.1); err == nil {
		t.Error("SetLoss(-0.1) accepted")
	}
	if err := h.SetLatency(-time.Second); err == nil {
		t.Error("SetLatency(-1s) accepted")
	}
	if got := h.Link().MTU; got != DefaultMTU {
		t.Errorf("default MTU %d", got)
	}
}

func TestPorts(t *testing.T) {
	n := newTestNetwork(t, Config{})
	h := addHost(t, n, Link{})
	c1 := listen(t, h, 0)
	c2 := listen(t, h, 0)
	fixed := listen(t, h, 6881)
	la, ok := c1.LocalAddr().(*net.UDPAddr)
	if !ok {
		t.Fatalf("LocalAddr is %T, want *net.UDPAddr", c1.LocalAddr())
	}
	if la.AddrPort().Addr().Unmap() != h.Addr() || la.Port == 0 || la.Port == c2.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("ephemeral addresses %s %s", c1.LocalAddr(), c2.LocalAddr())
	}
	if fixed.LocalAddr().String() != h.Addr().String()+":6881" {
		t.Fatalf("fixed port address %s", fixed.LocalAddr())
	}
	if _, err := h.ListenPacket(6881); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("second listen on 6881: %v, want ErrPortInUse", err)
	}
	if _, err := h.ListenPacket(70000); err == nil {
		t.Fatal("port 70000 accepted")
	}
	fixed.Close()
	listen(t, h, 6881) // free again
	type buffered interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}
	if _, ok := c1.(buffered); !ok {
		t.Fatal("conn lacks SetReadBuffer/SetWriteBuffer (quic-go warns)")
	}
}

func TestDeliveryWithLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		a := addHost(t, n, Link{Latency: 10 * time.Millisecond})
		b := addHost(t, n, Link{Latency: 15 * time.Millisecond})
		ca, cb := listen(t, a, 0), listen(t, b, 4000)

		start := time.Now()
		send(t, ca, cb, []byte("hello"))
		got, from := recv(t, cb, time.Second)
		if elapsed := time.Since(start); elapsed != 25*time.Millisecond {
			t.Errorf("one-way delay %v, want 25ms (10ms + 15ms)", elapsed)
		}
		if string(got) != "hello" || from.String() != ca.LocalAddr().String() {
			t.Errorf("got %q from %s, want hello from %s", got, from, ca.LocalAddr())
		}
		if _, ok := from.(*net.UDPAddr); !ok {
			t.Errorf("source address is %T, want *net.UDPAddr", from)
		}

		// The reply takes the same path back; order is kept.
		start = time.Now()
		for i := range 3 {
			send(t, cb, ca, []byte{byte(i)})
		}
		for i := range 3 {
			got, _ := recv(t, ca, time.Second)
			if !bytes.Equal(got, []byte{byte(i)}) {
				t.Fatalf("packet %d: got %v", i, got)
			}
		}
		if elapsed := time.Since(start); elapsed != 25*time.Millisecond {
			t.Errorf("reply delay %v, want 25ms", elapsed)
		}

		// Latency can change at run time.
		if err := b.SetLatency(0); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		send(t, ca, cb, []byte("x"))
		recv(t, cb, time.Second)
		if elapsed := time.Since(start); elapsed != 10*time.Millisecond {
			t.Errorf("delay after SetLatency %v, want 10ms", elapsed)
		}

		// Two conns of one host reach each other through the host's link,
		// crossing it twice.
		ca2 := listen(t, a, 0)
		start = time.Now()
		send(t, ca, ca2, []byte("self"))
		if got, _ := recv(t, ca2, time.Second); string(got) != "self" {
			t.Fatalf("self send: got %q", got)
		}
		if elapsed := time.Since(start); elapsed != 20*time.Millisecond {
			t.Errorf("self send delay %v, want 20ms", elapsed)
		}
	})
}

func TestRecvQueueOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{RecvQueue: 3})
		defer n.Close()
		a, b := addHost(t, n, Link{}), addHost(t, n, Link{})
		ca, cb := listen(t, a, 0), listen(t, b, 0)
		for i := range 5 {
			send(t, ca, cb, []byte{byte(i)})
		}
		synctest.Wait()
		for i := range 3 {
			if got, _ := recv(t, cb, time.Second); got[0] != byte(i) {
				t.Fatalf("packet %d: got %d", i, got[0])
			}
		}
		expectNothing(t, cb, time.Second)
		if c := a.Counters(); c.PacketsDropped != 2 {
			t.Errorf("dropped %d, want 2 (full receive queue)", c.PacketsDropped)
		}
		// The queue takes packets again once drained.
		send(t, ca, cb, []byte{9})
		if got, _ := recv(t, cb, time.Second); got[0] != 9 {
			t.Fatalf("after drain: got %d", got[0])
		}
	})
}

// transferTime sends count packets of size bytes from the senders (round
// robin) to the receivers and returns when the last one arrived.
func transferTime(t *testing.T, senders, receivers []net.PacketConn, count, size int) time.Duration {
	t.Helper()
	start := time.Now()
	payload := make([]byte, size)
	for i := range count {
		send(t, senders[i%len(senders)], receivers[i%len(receivers)], payload)
	}
	for i := range count {
		recv(t, receivers[i%len(receivers)], 10*time.Second)
	}
	return time.Since(start)
}

func TestBandwidthShaping(t *testing.T) {
	const (
		rate  = 1_000_000 // bytes per second
		size  = 1000
		count = 50 // 50 ms of traffic: below CoDel's 100 ms interval, nothing dropped
	)
	for _, tc := range []struct {
		name   string
		burst  time.Duration
		credit int // bytes the idle token bucket lets through at once
	}{
		{"one packet burst", -1, DefaultMTU - ipUDPOverhead + headerLen},
		{"default burst", 0, int(rate * DefaultLinkBurst.Seconds())},
	} {
		// Each packet costs size + 4 bytes of port header.
		want := time.Duration(float64(count*(size+headerLen)-tc.credit) / rate * float64(time.Second))
		check := func(t *testing.T, got time.Duration) {
			t.Helper()
			if math.Abs(float64(got-want)) > 0.01*float64(want) {
				t.Errorf("%d packets took %v, want %v ±1%%", count, got, want)
			} else {
				t.Logf("%d × %d bytes in %v (virtual), want %v", count, size, got, want)
			}
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Run("uplink", func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					n := newTestNetwork(t, Config{LinkBurst: tc.burst})
					defer n.Close()
					a, b := addHost(t, n, Link{Up: rate}), addHost(t, n, Link{})
					ca, cb := listen(t, a, 0), listen(t, b, 0)
					check(t, transferTime(t, []net.PacketConn{ca}, []net.PacketConn{cb}, count, size))
					if c := a.Counters(); c.PacketsDropped != 0 || c.PacketsSent != count {
						t.Errorf("counters %+v", c)
					}
				})
			})
			t.Run("downlink", func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					n := newTestNetwork(t, Config{LinkBurst: tc.burst})
					defer n.Close()
					a, b := addHost(t, n, Link{}), addHost(t, n, Link{Down: rate})
					ca, cb := listen(t, a, 0), listen(t, b, 0)
					check(t, transferTime(t, []net.PacketConn{ca}, []net.PacketConn{cb}, count, size))
				})
			})
			// Two conns of a host share its link: together they get the rate once.
			t.Run("shared", func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					n := newTestNetwork(t, Config{LinkBurst: tc.burst})
					defer n.Close()
					a, b := addHost(t, n, Link{Up: rate}), addHost(t, n, Link{})
					senders := []net.PacketConn{listen(t, a, 0), listen(t, a, 0)}
					receivers := []net.PacketConn{listen(t, b, 0), listen(t, b, 0)}
					check(t, transferTime(t, senders, receivers, count, size))
				})
			})
		})
	}
}

func TestLossRate(t *testing.T) {
	const count = 4000
	run := func(seed int64, lossA, lossB float64) (recvd int64) {
		synctest.Test(t, func(t *testing.T) {
			n := newTestNetwork(t, Config{Seed: seed, RecvQueue: count})
			defer n.Close()
			a := addHost(t, n, Link{Loss: lossA})
			b := addHost(t, n, Link{Loss: lossB, Latency: time.Millisecond})
			ca, cb := listen(t, a, 0), listen(t, b, 0)
			for range count {
				send(t, ca, cb, []byte("p"))
			}
			time.Sleep(time.Second) // virtual: everything has arrived or was lost
			ca.Close()
			c := a.Counters()
			if c.PacketsSent != count || b.Counters().PacketsRecv+c.PacketsDropped != count {
				t.Errorf("sent %d, received %d, dropped %d: does not add up", c.PacketsSent, b.Counters().PacketsRecv, c.PacketsDropped)
			}
			recvd = b.Counters().PacketsRecv
		})
		return recvd
	}
	for _, tc := range []struct{ lossA, lossB float64 }{{0.2, 0}, {0, 0.2}, {0.1, 0.1}} {
		got := run(1, tc.lossA, tc.lossB)
		p := 1 - (1-tc.lossA)*(1-tc.lossB)
		mean := count * (1 - p)
		sd := math.Sqrt(count * p * (1 - p))
		if math.Abs(float64(got)-mean) > 5*sd {
			t.Errorf("loss %v/%v: %d of %d arrived, want %.0f ± %.0f", tc.lossA, tc.lossB, got, count, mean, 5*sd)
		}
		t.Logf("loss %v/%v: %d of %d arrived (expected %.0f)", tc.lossA, tc.lossB, got, count, mean)
	}
	if a, b := run(7, 0.3, 0), run(7, 0.3, 0); a != b {
		t.Errorf("same seed, different outcome: %d vs %d", a, b)
	}
	if a, b := run(7, 0.3, 0), run(8, 0.3, 0); a == b {
		t.Logf("seeds 7 and 8 happen to give the same count %d", a)
	}
	if got := run(1, 1, 0); got != 0 {
		t.Errorf("loss 1: %d arrived", got)
	}
}

func TestCutAndHeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		a := addHost(t, n, Link{Latency: 10 * time.Millisecond})
		b := addHost(t, n, Link{Latency: 10 * time.Millisecond})
		ca, cb := listen(t, a, 0), listen(t, b, 0)

		send(t, ca, cb, []byte("before"))
		recv(t, cb, time.Second)

		b.Cut()
		if !b.IsCut() {
			t.Fatal("IsCut false after Cut")
		}
		send(t, ca, cb, []byte("to cut host"))
		expectNothing(t, cb, time.Second)
		send(t, cb, ca, []byte("from cut host"))
		expectNothing(t, ca, time.Second)

		b.Heal()
		send(t, ca, cb, []byte("after"))
		if got, _ := recv(t, cb, time.Second); string(got) != "after" {
			t.Fatalf("got %q after heal", got)
		}
		send(t, cb, ca, []byte("back"))
		recv(t, ca, time.Second)

		// A packet already travelling when its receiver is cut is lost.
		send(t, ca, cb, []byte("in flight"))
		time.Sleep(5 * time.Millisecond)
		b.Cut()
		expectNothing(t, cb, time.Second)
		b.Heal()

		if got := a.Counters().PacketsDropped; got != 2 {
			t.Errorf("a dropped %d, want 2", got)
		}
		if got := b.Counters().PacketsDropped; got != 1 {
			t.Errorf("b dropped %d, want 1", got)
		}
	})
}

func TestPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		hosts := make([]*Host, 5)
		conns := make([]net.PacketConn, 5)
		for i := range hosts {
			hosts[i] = addHost(t, n, Link{Latency: time.Millisecond})
			conns[i] = listen(t, hosts[i], 0)
		}
		reach := func(i, j int, want bool) {
			t.Helper()
			send(t, conns[i], conns[j], fmt.Appendf(nil, "%d->%d", i, j))
			if want {
				recv(t, conns[j], time.Second)
			} else {
				expectNothing(t, conns[j], time.Second)
			}
		}
		// {0,1} | {2} | the rest {3,4}
		if err := n.Partition(hosts[0:2], hosts[2:3]); err != nil {
			t.Fatal(err)
		}
		reach(0, 1, true)
		reach(1, 0, true)
		reach(3, 4, true)
		reach(0, 2, false)
		reach(2, 0, false)
		reach(0, 3, false)
		reach(2, 4, false)

		// Hosts added later join the unlisted group.
		late := addHost(t, n, Link{})
		lc := listen(t, late, 0)
		conns, hosts = append(conns, lc), append(hosts, late)
		reach(5, 3, true)
		reach(5, 0, false)

		n.HealPartition()
		for i := range conns {
			for j := range conns {
				if i != j {
					reach(i, j, true)
				}
			}
		}

		if err := n.Partition(hosts[0:2], hosts[1:3]); !errors.Is(err, ErrDuplicateHost) {
			t.Errorf("host in two groups: %v, want ErrDuplicateHost", err)
		}
		other := newTestNetwork(t, Config{})
		defer other.Close()
		if err := n.Partition([]*Host{addHost(t, other, Link{})}); !errors.Is(err, ErrForeignHost) {
			t.Errorf("foreign host: %v, want ErrForeignHost", err)
		}
	})
}

func TestCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		a, b := addHost(t, n, Link{}), addHost(t, n, Link{})
		ca, cb := listen(t, a, 0), listen(t, b, 0)
		dht := listen(t, a, 0) // a second conn of a counts into the same host

		send(t, ca, cb, make([]byte, 100))
		send(t, dht, cb, make([]byte, 50))
		recv(t, cb, time.Second)
		recv(t, cb, time.Second)
		send(t, cb, ca, make([]byte, 10))
		recv(t, ca, time.Second)
		// Lost: no such port, no such host, too big for the MTU.
		if _, err := ca.WriteTo([]byte("x"), &net.UDPAddr{IP: b.Addr().AsSlice(), Port: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.WriteTo([]byte("yy"), &net.UDPAddr{IP: net.IPv4(127, 20, 9, 9), Port: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.WriteTo(make([]byte, DefaultMTU-ipUDPOverhead+1), cb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		wantA := Counters{BytesSent: 100 + 50 + 1 + 2 + DefaultMTU - ipUDPOverhead + 1, BytesRecv: 10, PacketsSent: 5, PacketsRecv: 1, PacketsDropped: 3}
		wantB := Counters{BytesSent: 10, BytesRecv: 150, PacketsSent: 1, PacketsRecv: 2}
		if got := a.Counters(); got != wantA {
			t.Errorf("a: %+v, want %+v", got, wantA)
		}
		if got := b.Counters(); got != wantB {
			t.Errorf("b: %+v, want %+v", got, wantB)
		}
		var total Counters
		total.add(wantA)
		total.add(wantB)
		if got := n.Counters(); got != total {
			t.Errorf("network: %+v, want %+v", got, total)
		}
	})
}

func TestMTU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		a := addHost(t, n, Link{MTU: 9000})
		b := addHost(t, n, Link{MTU: 1280})
		ca, cb := listen(t, a, 0), listen(t, b, 0)
		// The path MTU is the smaller of the two links'.
		send(t, ca, cb, make([]byte, 1280-ipUDPOverhead+1))
		expectNothing(t, cb, time.Second)
		send(t, ca, cb, make([]byte, 1280-ipUDPOverhead))
		if got, _ := recv(t, cb, time.Second); len(got) != 1280-ipUDPOverhead {
			t.Fatalf("got %d bytes", len(got))
		}
		// A short read buffer truncates, as with UDP.
		send(t, ca, cb, []byte("truncated"))
		buf := make([]byte, 4)
		nr, _, err := cb.ReadFrom(buf)
		if err != nil || string(buf[:nr]) != "trun" {
			t.Fatalf("short read: %q, %v", buf[:nr], err)
		}
	})
}

func TestRefusesNonLoopback(t *testing.T) {
	n := newTestNetwork(t, Config{})
	h := addHost(t, n, Link{})
	c := listen(t, h, 0)
	for _, to := range []net.Addr{
		&net.UDPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 53},
		&net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 6881},
		&net.UDPAddr{IP: net.IPv6loopback, Port: 6881},
		&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 6881},
		&net.IPAddr{IP: net.IPv4(1, 1, 1, 1)},
		&net.TCPAddr{IP: net.IPv4(192, 168, 1, 1), Port: 80},
	} {
		if _, err := c.WriteTo([]byte("x"), to); err == nil {
			t.Errorf("write to %s accepted", to)
		} else if _, isIP := to.(*net.IPAddr); !isIP && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("write to %s: %v, want ErrNotLoopback", to, err)
		}
	}
	if _, err := c.WriteTo([]byte("x"), nil); err == nil {
		t.Error("write to nil accepted")
	}
	if got := h.Counters().PacketsSent; got != 0 {
		t.Errorf("refused writes counted as sent: %d", got)
	}
	// 127/8 outside the subnet, IPv4-mapped form, and a non-UDP addr type
	// are accepted (and dropped: nobody holds them).
	for _, to := range []net.Addr{
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		&net.UDPAddr{IP: net.ParseIP("::ffff:127.20.0.1"), Port: 1},
		&net.TCPAddr{IP: net.IPv4(127, 20, 0, 1), Port: 1},
	} {
		if _, err := c.WriteTo([]byte("x"), to); err != nil {
			t.Errorf("write to %s: %v", to, err)
		}
	}
}

func TestReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		a, b := addHost(t, n, Link{}), addHost(t, n, Link{})
		ca, cb := listen(t, a, 0), listen(t, b, 0)
		buf := make([]byte, 100)

		cb.SetReadDeadline(time.Now().Add(-time.Second))
		_, _, err := cb.ReadFrom(buf)
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past deadline: %v", err)
		}

		// quic-go's Transport.Close: a reader blocked with no deadline is
		// woken by setting the deadline to now.
		cb.SetReadDeadline(time.Time{})
		done := make(chan error, 1)
		go func() {
			_, _, err := cb.ReadFrom(buf)
			done <- err
		}()
		synctest.Wait()
		cb.SetReadDeadline(time.Now())
		if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked read after SetReadDeadline(now): %v", err)
		}

		// A deadline moved later keeps the reader waiting for the packet.
		cb.SetReadDeadline(time.Now().Add(time.Millisecond))
		go func() {
			_, _, err := cb.ReadFrom(buf)
			done <- err
		}()
		synctest.Wait()
		cb.SetReadDeadline(time.Time{})
		time.Sleep(time.Second)
		send(t, ca, cb, []byte("late"))
		if err := <-done; err != nil {
			t.Fatalf("read after deadline cleared: %v", err)
		}

		ca.SetWriteDeadline(time.Now().Add(-time.Second))
		if _, err := ca.WriteTo([]byte("x"), cb.LocalAddr()); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write past deadline: %v", err)
		}
	})
}

func TestClose(t *testing.T) {
	n := newTestNetwork(t, Config{})
	a, b := addHost(t, n, Link{}), addHost(t, n, Link{})
	ca, cb := listen(t, a, 0), listen(t, b, 0)

	// Closing a conn: reads fail with net.ErrClosed, the port is freed.
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on closed conn: %v, want net.ErrClosed", err)
	}
	if _, err := ca.WriteTo([]byte("x"), cb.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on closed conn: %v, want net.ErrClosed", err)
	}
	if err := ca.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	// Closing the network wakes a blocked reader with net.ErrClosed.
	done := make(chan error, 1)
	go func() {
		_, _, err := cb.ReadFrom(make([]byte, 10))
		done <- err
	}()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked read after network Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked read not woken by network Close")
	}
	if _, err := n.AddHost(Link{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("AddHost after Close: %v", err)
	}
	if _, err := b.ListenPacket(0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ListenPacket after Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestManyHosts checks 500 hosts with two conns each in virtual time: every
// host sends to its neighbour on both conns and everything arrives.
func TestManyHosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hosts = 500
		n := newTestNetwork(t, Config{})
		defer n.Close()
		conns := make([][2]net.PacketConn, hosts)
		for i := range hosts {
			h := addHost(t, n, Link{Up: 1 << 20, Down: 1 << 20, Latency: 5 * time.Millisecond})
			conns[i] = [2]net.PacketConn{listen(t, h, 0), listen(t, h, 0)}
		}
		for i := range hosts {
			for k := range 2 {
				send(t, conns[i][k], conns[(i+1)%hosts][k], []byte("ping"))
			}
		}
		for i := range hosts {
			for k := range 2 {
				recv(t, conns[i][k], time.Second)
			}
		}
		if c := n.Counters(); c.PacketsRecv != 2*hosts || c.PacketsDropped != 0 {
			t.Fatalf("counters %+v", c)
		}
	})
}

// BenchmarkHosts500 builds a network of 500 hosts with two conns each and
// reports the memory (heap plus goroutine stacks, after GC) and goroutines
// per host, and the time to build it.
func BenchmarkHosts500(b *testing.B) {
	const hosts = 500
	var perHost, goroutines float64
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		b.StartTimer()
		n, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		for range hosts {
			h, err := n.AddHost(Link{Up: 1 << 20, Down: 1 << 20, Latency: 10 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			for range 2 {
				if _, err := h.ListenPacket(0); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perHost = float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse) / hosts
		goroutines = float64(runtime.NumGoroutine()-g0) / hosts
		n.Close()
		b.StartTimer()
	}
	b.ReportMetric(perHost, "B/host")
	b.ReportMetric(goroutines, "goroutines/host")
}
