package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// sampleMessages has one or more of every message type; the fuzz seeds are
// built from it too.
func sampleMessages() []Message {
	return []Message{
		&Hello{Version: 1, NodeID: NodeID{1, 2, 3}},
		&Hello{Version: 1, NodeID: NodeID{9}, Releases: []HaveSet{
			{ID: mid(1), Bitfield: []byte{0xff, 0x80}},
			{ID: mid(2), Complete: true},
			{ID: mid(3)},
		}},
		&Have{ID: mid(4), Index: 0xdeadbeef},
		&Record{Relay: bytes.Repeat([]byte{7}, MaxRecord)},
		&Record{Relay: []byte{1}},
		&Peers{},
		&Peers{Addrs: []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:6881"),
			netip.MustParseAddrPort("[2001:db8::1]:443"),
			netip.MustParseAddrPort("[::ffff:127.0.0.2]:9"),
		}},
		&Error{Code: CodeNotFound, Reason: "not found"},
		&Error{Code: 999},
		&GetManifest{ID: mid(5)},
		&GetChunk{ID: mid(6), Index: 42},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		f, err := EncodeMessage(m)
		if err != nil {
			t.Fatalf("encode %#v: %v", m, err)
		}
		typ, p, rest, err := DecodeFrame(f, 1<<20)
		if err != nil || typ != m.Type() || len(rest) != 0 {
			t.Fatalf("frame of %s: %v %v %d", m.Type(), typ, err, len(rest))
		}
		got, err := DecodeMessage(typ, p)
		if err != nil {
			t.Fatalf("decode %s: %v", typ, err)
		}
		again, _ := EncodeMessage(got)
		if !bytes.Equal(again, f) {
			t.Fatalf("%s does not round-trip:\n%x\n%x", typ, f, again)
		}
	}
}

// TestGoldenBytes pins the byte layout documented in docs/FORMATS.md.
func TestGoldenBytes(t *testing.T) {
	cases := []struct {
		m   Message
		hex string
	}{
		{&Have{ID: mid(0xaa), Index: 258},
			"02" + "00000024" + strings.Repeat("aa", 32) + "00000102"},
		{&GetChunk{ID: mid(0x01), Index: 1},
			"11" + "00000024" + strings.Repeat("01", 32) + "00000001"},
		{&GetManifest{ID: mid(0x02)},
			"10" + "00000020" + strings.Repeat("02", 32)},
		{&Error{Code: CodeNotFound, Reason: "no"},
			"05" + "00000004" + "0005" + "6e6f"},
		{&Peers{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6881"), netip.MustParseAddrPort("[::1]:1")}},
			"04" + "0000001c" + "0002" + "04" + "7f000001" + "1ae1" + "06" + "00000000000000000000000000000001" + "0001"},
		{&Hello{Version: 1, NodeID: NodeID{0xee}, Releases: []HaveSet{{ID: mid(0x03), Bitfield: []byte{0xa0}}, {ID: mid(0x04), Complete: true}}},
			"01" + "0000006f" + "0001" + "ee" + strings.Repeat("00", 31) + "0002" +
				strings.Repeat("03", 32) + "00" + "00000001" + "a0" +
				strings.Repeat("04", 32) + "01" + "00000000"},
		{&Record{Relay: []byte{1, 2, 3}}, "03" + "00000003" + "010203"},
	}
	for _, c := range cases {
		f, err := EncodeMessage(c.m)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(f); got != c.hex {
			t.Errorf("%s:\n got %s\nwant %s", c.m.Type(), got, c.hex)
		}
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	h := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	id := strings.Repeat("11", 32)
	cases := []struct {
		name string
		t    Type
		p    []byte
		err  error
	}{
		{"unknown type", 0x7f, nil, ErrUnknownMessage},
		{"chunk is not a message", TypeChunk, []byte{1}, ErrProtocol},
		{"short Have", TypeHave, h(id), ErrProtocol},
		{"long Have", TypeHave, h(id + "00000001 00"), ErrProtocol},
		{"empty Record", TypeRecord, nil, ErrProtocol},
		{"long Record", TypeRecord, make([]byte, MaxRecord+1), ErrProtocol},
		{"Hello unknown flag", TypeHello, h("0001" + id + "0001" + id + "02 00000000"), ErrProtocol},
		{"Hello complete with bitfield", TypeHello, h("0001" + id + "0001" + id + "01 00000001 ff"), ErrProtocol},
		{"Hello bitfield past the end", TypeHello, h("0001" + id + "0001" + id + "00 00000005 ff"), ErrProtocol},
		{"Hello claims many releases", TypeHello, h("0001" + id + "ffff"), ErrProtocol},
		{"Hello trailing byte", TypeHello, h("0001" + id + "0000 00"), ErrProtocol},
		{"Peers bad family", TypePeers, h("0001 05 7f000001 0001"), ErrProtocol},
		{"Peers truncated address", TypePeers, h("0002 04 7f000001 0001 06 0000"), ErrProtocol},
		{"Peers claims many", TypePeers, h("ffff 04 7f000001 0001"), ErrProtocol},
		{"Error bad UTF-8", TypeError, h("0001 ff"), ErrProtocol},
		{"Error long reason", TypeError, append(h("0001"), make([]byte, MaxReason+1)...), ErrProtocol},
		{"Error truncated", TypeError, h("00"), ErrProtocol},
		{"GetManifest short", TypeGetManifest, h("00"), ErrProtocol},
		{"GetChunk short", TypeGetChunk, h(id), ErrProtocol},
	}
	for _, c := range cases {
		if m, err := DecodeMessage(c.t, c.p); !errors.Is(err, c.err) {
			t.Errorf("%s: got %#v, %v; want %v", c.name, m, err, c.err)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, m := range []Message{
		&Record{},
		&Record{Relay: make([]byte, MaxRecord+1)},
		&Hello{Releases: []HaveSet{{Complete: true, Bitfield: []byte{1}}}},
		&Peers{Addrs: []netip.AddrPort{{}}},
		&Peers{Addrs: []netip.AddrPort{netip.MustParseAddrPort("[fe80::1%eth0]:1")}},
		&Error{Reason: strings.Repeat("x", MaxReason+1)},
		&Error{Reason: "\xff"},
	} {
		if _, err := EncodeMessage(m); err == nil {
			t.Errorf("encoded %#v", m)
		}
	}
}

func TestFrameLimits(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
		max   int
		err   error
	}{
		{"over max", header(TypeHello, 11), 10, ErrFrameTooLarge},
		{"over the type's fixed size", header(TypeHave, 37), 1 << 20, ErrFrameTooLarge},
		{"Record over its cap", header(TypeRecord, MaxRecord+1), 1 << 20, ErrFrameTooLarge},
		{"Error over its cap", header(TypeError, 2+MaxReason+1), 1 << 20, ErrFrameTooLarge},
		{"huge claim", header(TypeChunk, 0xffffffff), 1 << 30, ErrFrameTooLarge},
		{"unknown type", header(0x99, 0), 10, ErrUnknownMessage},
		{"refused everywhere", header(TypeHello, 0), -1, ErrProtocol},
		{"truncated header", header(TypeHello, 0)[:3], 10, io.ErrUnexpectedEOF},
		{"truncated payload", header(TypeHello, 4), 10, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		if _, _, _, err := DecodeFrame(c.frame, c.max); !errors.Is(err, c.err) {
			t.Errorf("DecodeFrame %s: %v, want %v", c.name, err, c.err)
		}
		if _, _, err := ReadFrame(bytes.NewReader(c.frame), c.max); !errors.Is(err, c.err) {
			t.Errorf("ReadFrame %s: %v, want %v", c.name, err, c.err)
		}
	}
	if _, _, err := ReadFrame(bytes.NewReader(nil), 10); err != io.EOF {
		t.Errorf("ReadFrame of nothing: %v, want io.EOF", err)
	}
	typ, p, err := ReadFrame(bytes.NewReader(EncodeFrame(TypeHello, []byte("abc"))), 3)
	if err != nil || typ != TypeHello || string(p) != "abc" {
		t.Errorf("ReadFrame at the limit: %v %q %v", typ, p, err)
	}
}

// TestReadFrameAllocatesWithinLimit: a frame that claims more than the
// limit is refused before anything is allocated for it.
func TestReadFrameAllocatesWithinLimit(t *testing.T) {
	f := header(TypeChunk, 1<<30)
	allocs := testing.AllocsPerRun(100, func() {
		ReadFrame(bytes.NewReader(f), 1<<20)
	})
	// The error value and its formatting allocate a little; a 1 GiB
	// payload would show as a huge number of bytes, which AllocsPerRun
	// does not count, so check the bytes directly as well.
	if allocs > 20 {
		t.Fatalf("%v allocations for a refused frame", allocs)
	}
	var got int
	r := &countingReader{r: bytes.NewReader(f), n: &got}
	ReadFrame(r, 1<<20)
	if got != HeaderSize {
		t.Fatalf("read %d bytes of a refused frame, want only the %d-byte header", got, HeaderSize)
	}
}

type countingReader struct {
	r io.Reader
	n *int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += n
	return n, err
}

func TestErrorMatchesSentinel(t *testing.T) {
	for code := CodeNone; code <= CodeCancelled; code++ {
		err := error(&Error{Code: code})
		if !errors.Is(err, code.Err()) {
			t.Errorf("code %s does not match its sentinel", code)
		}
		if codeOf(code.Err()) != code {
			t.Errorf("codeOf(%v) = %s", code.Err(), codeOf(code.Err()))
		}
	}
	if errors.Is(&Error{Code: 500}, ErrInternal) || ErrorCode(500).Err() != nil {
		t.Error("an unknown code matched a sentinel")
	}
	if got := truncate(strings.Repeat("é", 200)); len(got) > MaxReason || !strings.HasPrefix(strings.Repeat("é", 200), got) {
		t.Errorf("truncate cut badly: %d bytes", len(got))
	}
}
