package netsim

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// arrives reports whether one packet from c reaches to within a second of
// virtual time, and from where.
func arrives(t *testing.T, c net.PacketConn, to net.Addr, from net.PacketConn) (bool, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteTo([]byte("x"), to); err != nil {
		t.Fatal(err)
	}
	from.SetReadDeadline(time.Now().Add(time.Second))
	defer from.SetReadDeadline(time.Time{})
	buf := make([]byte, 64)
	_, src, err := from.ReadFrom(buf)
	if err != nil {
		return false, netip.AddrPort{}
	}
	return true, addrPort(src)
}

// TestNATRules checks each NAT type's mapping and filtering: a host A behind
// the NAT talks to S; then S from another port, and a host T that A never
// talked to, try to reach A's mapped port, and A talks to T to show whether
// the mapping depends on the destination.
func TestNATRules(t *testing.T) {
	for _, tc := range []struct {
		typ                     NATType
		sameMapping             bool // A→T uses the public port of A→S
		fromOtherPort, fromElse bool // S:s2 / T reach A through A→S's mapping
	}{
		{NATNone, true, true, true},
		{NATFullCone, true, true, true},
		{NATAddressRestricted, true, true, false},
		{NATPortRestricted, true, false, false},
		{NATSymmetric, false, false, false},
	} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, err := New(Config{})
				if err != nil {
					t.Fatal(err)
				}
				defer n.Close()
				a, err := n.AddHostNAT(Link{Latency: 5 * time.Millisecond}, NAT{Type: tc.typ})
				if err != nil {
					t.Fatal(err)
				}
				if a.NAT() != tc.typ {
					t.Fatalf("NAT() = %v", a.NAT())
				}
				if (a.Addr() == a.PublicAddr()) != (tc.typ == NATNone) {
					t.Fatalf("inside %s, public %s", a.Addr(), a.PublicAddr())
				}
				s := addHost(t, n, Link{Latency: 5 * time.Millisecond})
				other := addHost(t, n, Link{Latency: 5 * time.Millisecond})
				ac := listen(t, a, 4000)
				s1, s2 := listen(t, s, 5001), listen(t, s, 5002)
				tc1 := listen(t, other, 6000)
				if got := addrPort(ac.LocalAddr()).Addr(); got != a.Addr() {
					t.Fatalf("LocalAddr %s, want inside address %s", got, a.Addr())
				}

				ok, seen := arrives(t, ac, s1.LocalAddr(), s1)
				if !ok {
					t.Fatal("A → S lost")
				}
				if seen.Addr() != a.PublicAddr() {
					t.Fatalf("S sees A at %s, want public address %s", seen, a.PublicAddr())
				}
				if tc.typ == NATNone && seen.Port() != 4000 {
					t.Fatalf("no NAT, S sees port %d", seen.Port())
				}
				mapped := net.UDPAddrFromAddrPort(seen)
				if ok, _ := arrives(t, s1, mapped, ac); !ok {
					t.Fatal("S's reply to A's mapping lost")
				}
				if ok, _ := arrives(t, s2, mapped, ac); ok != tc.fromOtherPort {
					t.Errorf("S from another port reaches A: %v, want %v", ok, tc.fromOtherPort)
				}
				if ok, _ := arrives(t, tc1, mapped, ac); ok != tc.fromElse {
					t.Errorf("a stranger reaches A: %v, want %v", ok, tc.fromElse)
				}
				ok, seenT := arrives(t, ac, tc1.LocalAddr(), tc1)
				if !ok {
					t.Fatal("A → T lost")
				}
				if (seenT == seen) != tc.sameMapping {
					t.Errorf("A→S mapped to %s, A→T to %s; same wanted: %v", seen, seenT, tc.sameMapping)
				}
				// A packet to the inside address from outside goes nowhere.
				if tc.typ != NATNone {
					inside := &net.UDPAddr{IP: a.Addr().AsSlice(), Port: 4000}
					if ok, _ := arrives(t, s1, inside, ac); ok {
						t.Error("the inside address is reachable from outside")
					}
				}
			})
		})
	}
}

// TestNATTimeout checks that a mapping dies after the timeout without
// outbound traffic, that inbound traffic does not keep it alive, and that
// outbound traffic does.
func TestNATTimeout(t *testing.T) {
	for _, typ := range NATTypes()[1:] {
		t.Run(typ.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, err := New(Config{})
				if err != nil {
					t.Fatal(err)
				}
				defer n.Close()
				const timeout = 30 * time.Second
				a, err := n.AddHostNAT(Link{Latency: time.Millisecond}, NAT{Type: typ, Timeout: timeout})
				if err != nil {
					t.Fatal(err)
				}
				s := addHost(t, n, Link{Latency: time.Millisecond})
				ac, sc := listen(t, a, 4000), listen(t, s, 5000)
				_, seen := arrives(t, ac, sc.LocalAddr(), sc)
				mapped := net.UDPAddrFromAddrPort(seen)

				// Kept alive by A's packets every 20 s, for two minutes.
				for range 6 {
					time.Sleep(20 * time.Second)
					if ok, _ := arrives(t, ac, sc.LocalAddr(), sc); !ok {
						t.Fatal("A's keepalive lost")
					}
					if ok, _ := arrives(t, sc, mapped, ac); !ok {
						t.Fatal("mapping died although A kept sending")
					}
				}
				if a.NATMappings() != 1 {
					t.Fatalf("%d mappings, want 1", a.NATMappings())
				}
				// S alone sending every 20 s does not keep it.
				alive := 0
				for range 3 {
					time.Sleep(20 * time.Second)
					if ok, _ := arrives(t, sc, mapped, ac); ok {
						alive++
					}
				}
				if alive != 1 {
					t.Fatalf("inbound-only packets got through %d times, want 1 (before the timeout)", alive)
				}
				if a.NATMappings() != 0 {
					t.Fatalf("%d mappings after the timeout, want 0", a.NATMappings())
				}
			})
		})
	}
}

func TestNATConfig(t *testing.T) {
	// Subnets that do not lie inside 127.0.0.0/8: wider than it, and not
	// IPv4 (no address outside loopback is written here, even as data).
	for _, p := range []string{"127.0.0.0/7", "::1/128"} {
		if _, err := New(Config{NATSubnet: netip.MustParsePrefix(p)}); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("NAT subnet %s, not inside 127/8: %v", p, err)
		}
	}
	if _, err := New(Config{NATSubnet: netip.MustParsePrefix("127.20.0.0/16")}); err == nil {
		t.Error("NAT subnet overlapping the subnet accepted")
	}
	n := newTestNetwork(t, Config{NATSubnet: netip.MustParsePrefix("127.30.0.0/23")})
	if _, err := n.AddHostNAT(Link{}, NAT{Type: NATType(9)}); !errors.Is(err, ErrBadNATType) {
		t.Errorf("bad type: %v", err)
	}
	var hosts []*Host
	for range 2 {
		h, err := n.AddHostNAT(Link{}, NAT{Type: NATPortRestricted})
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
	}
	if hosts[0].Addr() != netip.MustParseAddr("127.30.0.2") || hosts[1].Addr() != netip.MustParseAddr("127.30.1.2") {
		t.Errorf("inside addresses %s, %s", hosts[0].Addr(), hosts[1].Addr())
	}
	if _, err := n.AddHostNAT(Link{}, NAT{Type: NATSymmetric}); !errors.Is(err, ErrSubnetFull) {
		t.Errorf("third NAT in a /23: %v", err)
	}
	for _, typ := range NATTypes() {
		got, err := ParseNATType(typ.String())
		if err != nil || got != typ {
			t.Errorf("ParseNATType(%q) = %v, %v", typ.String(), got, err)
		}
	}
	if _, err := ParseNATType("cone"); !errors.Is(err, ErrBadNATType) {
		t.Errorf("ParseNATType(cone): %v", err)
	}
}

// TestNATLocal checks that a host behind a NAT reaches its own conns by its
// inside address.
func TestNATLocal(t *testing.T) {
	n := newTestNetwork(t, Config{})
	a, err := n.AddHostNAT(Link{}, NAT{Type: NATSymmetric})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := listen(t, a, 1), listen(t, a, 2)
	ok, from := arrives(t, c1, c2.LocalAddr(), c2)
	if !ok || from != addrPort(c1.LocalAddr()) {
		t.Fatalf("local delivery: %v from %s", ok, from)
	}
}
