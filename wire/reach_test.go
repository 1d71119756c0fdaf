package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// TestReachPeersRoundTrip: each kind of entry encodes and decodes back to
// itself; an entry list of an unknown version is kept opaque; malformed
// entries are refused.
func TestReachPeersRoundTrip(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, m := range []*ReachPeers{
		{Version: ReachVersion},
		{Version: ReachVersion, Entries: []ReachEntry{
			{Addr: ap("127.20.0.1:4433"), Direct: true},
			{Addr: ap("127.20.0.2:20001"), NAT: true, Via: ap("127.20.0.1:4433")},
			{Addr: ap("127.20.0.3:20007"), NAT: true, Varies: true, Via: ap("127.20.0.1:4433"),
				Relay: ap("127.20.0.4:4433"), AtRelay: ap("127.20.0.3:20009")},
			{Addr: ap("[::1]:9")},
		}},
		{Version: 2, Raw: []byte{1, 2, 3}},
	} {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeMessage(TypeReachPeers, b[HeaderSize:])
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip %+v → %+v", m, got)
		}
		again, _ := EncodeMessage(got)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded differently")
		}
	}
	for _, bad := range []*ReachPeers{
		{Version: ReachVersion, Entries: []ReachEntry{{Addr: ap("127.20.0.1:1"), Direct: true, NAT: true}}},
		{Version: ReachVersion, Entries: []ReachEntry{{Addr: ap("127.20.0.1:1"), Relay: ap("127.20.0.2:1")}}},
		{Version: 2, Entries: []ReachEntry{{Addr: ap("127.20.0.1:1")}}},
	} {
		if _, err := EncodeMessage(bad); err == nil {
			t.Errorf("encoded %+v", bad)
		}
	}
	for name, p := range map[string][]byte{
		"empty":         nil,
		"unknown flags": {ReachVersion, 0, 1, 0x80, 4, 127, 0, 0, 1, 0, 1},
		"direct+nat":    {ReachVersion, 0, 1, reachDirect | reachNAT, 4, 127, 0, 0, 1, 0, 1},
		"claims many":   {ReachVersion, 0xff, 0xff, 0, 4, 127, 0, 0, 1, 0, 1},
		"short relay":   {ReachVersion, 0, 1, reachRelay, 4, 127, 0, 0, 1, 0, 1, 4, 127, 0, 0, 2, 0, 1},
		"trailing":      {ReachVersion, 0, 0, 7},
	} {
		if _, err := DecodeMessage(TypeReachPeers, p); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
