package network

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestReachMsgRoundTrip(t *testing.T) {
	for _, m := range []reachMsg{
		{typ: msgObserve, nonce: 1, mapping: MappingStable},
		{typ: msgObserved, nonce: 2, addr: netip.MustParseAddrPort("127.20.0.5:20000")},
		{typ: msgConnect, nonce: 3, addr: netip.MustParseAddrPort("[::1]:9"), mapping: MappingVaries},
		{typ: msgRelayData, nonce: 4, payload: []byte("ciphertext")},
	} {
		b := m.encode()
		if b[0]&0xc0 != 0 {
			t.Fatalf("%s: first byte %#x has a QUIC bit set", m.typ, b[0])
		}
		got, err := decodeReach(b)
		if err != nil {
			t.Fatalf("%s: %v", m.typ, err)
		}
		if got.typ != m.typ || got.nonce != m.nonce || got.mapping != m.mapping || got.addr != m.addr || !bytes.Equal(got.payload, m.payload) {
			t.Fatalf("round trip %+v → %+v", m, got)
		}
	}
	if b := (reachMsg{typ: msgObserve}).encode(); len(b) < len((reachMsg{typ: msgObserved, addr: netip.MustParseAddrPort("[::1]:9")}).encode()) {
		t.Fatalf("observe request of %d bytes is smaller than its largest answer", len(b))
	}
	bad := [][]byte{
		nil,
		{reachMagic, reachVersion},
		append([]byte{0x20, reachVersion, 1}, make([]byte, 60)...),             // wrong magic
		append([]byte{reachMagic, 2, 1}, make([]byte, 60)...),                  // wrong version
		append([]byte{reachMagic, reachVersion, 99}, make([]byte, 60)...),      // unknown type
		(reachMsg{typ: msgObserve}).encode()[:20],                              // unpadded observe
		append((reachMsg{typ: msgPunch}).encode()[:12], 5),                     // address length 5
		append((reachMsg{typ: msgPunch}).encode()[:12], 4, 127, 0, 0, 1, 0, 0), // port 0
		(reachMsg{typ: msgRelayData, payload: make([]byte, maxRelayPayload+1)}).encode(),
	}
	for i, b := range bad {
		if _, err := decodeReach(b); !errors.Is(err, errBadReach) {
			t.Errorf("bad packet %d: %v", i, err)
		}
	}
}

// FuzzReachMsg: any input decodes or fails cleanly, and what decodes
// encodes back to a packet that decodes to the same message.
func FuzzReachMsg(f *testing.F) {
	f.Add((reachMsg{typ: msgObserve, nonce: 7}).encode())
	f.Add((reachMsg{typ: msgIntroduce, nonce: 7, addr: netip.MustParseAddrPort("127.20.0.9:4433"), mapping: MappingStable}).encode())
	f.Add((reachMsg{typ: msgRelayData, nonce: 7, payload: []byte{1, 2, 3}}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeReach(b)
		if err != nil {
			return
		}
		again, err := decodeReach(m.encode())
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", m, err)
		}
		if again.typ != m.typ || again.nonce != m.nonce || again.addr != m.addr || !bytes.Equal(again.payload, m.payload) {
			t.Fatalf("%+v → %+v", m, again)
		}
	})
}
