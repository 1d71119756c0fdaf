package network

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// publicLooking presents loopback peers as 203.0.113.1 (a documentation
// range), so that the DHT sees a non-local address while every packet still
// goes to 127.0.0.1. Writes anywhere else are refused.
type publicLooking struct{ net.PacketConn }

var fakePublic = netip.MustParseAddr("203.0.113.1")

func (c publicLooking) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if err != nil {
		return n, addr, err
	}
	ap := addrPortOfNet(addr)
	return n, net.UDPAddrFromAddrPort(netip.AddrPortFrom(fakePublic, ap.Port())), nil
}

func (c publicLooking) WriteTo(b []byte, addr net.Addr) (int, error) {
	ap := addrPortOfNet(addr)
	if ap.Addr().Unmap() != fakePublic {
		return 0, errors.New("publicLooking: refusing a real destination")
	}
	return c.PacketConn.WriteTo(b, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())))
}

func (c publicLooking) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(fakePublic, addrPortOfNet(c.PacketConn.LocalAddr()).Port()))
}

// TestRandomIDsAcceptedOnPublicAddresses: node IDs are random, not derived
// from the address (BEP42), so outside loopback and private ranges the DHT
// would refuse every node unless NoSecurity is set.
func TestRandomIDsAcceptedOnPublicAddresses(t *testing.T) {
	listen := func() publicLooking {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return publicLooking{pc}
	}
	cfg := testConfig(t)
	cfg.NoBootstrap = true
	cfg.DHTConn = listen()
	first := newTestNode(t, cfg)
	var nodes []*Node
	for range 4 {
		cfg := testConfig(t)
		cfg.DHTConn = listen()
		cfg.Bootstrap = []string{first.DHTAddr().String()}
		nodes = append(nodes, newTestNode(t, cfg))
	}
	if got := first.DHTAddr().Addr(); got != fakePublic {
		t.Fatalf("first node at %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap among public-looking addresses: %v", err)
		}
	}
	sp := signPacket(testKey(10), 1, []byte("public"))
	if err := nodes[0].PutRecord(ctx, sp); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nodes[3].GetRecord(ctx, sp.PublicKey); err != nil {
		t.Fatal(err)
	}
}
