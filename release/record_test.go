package release

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/net/dns/dnsmessage"
)

const testSeq = 1_767_323_045_000_000 // testTime in µs

func testEntry(app, platform, version string) Entry {
	v, err := ParseVersion(version)
	if err != nil {
		panic(err)
	}
	var id ManifestID
	copy(id[:], strings.Repeat(app+platform, 32))
	return Entry{App: app, Channel: "stable", Platform: platform, Version: v, ManifestID: id, Size: 3_000_000}
}

func entriesEqual(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if x.Target() == y.Target() && x.Version.Equal(y.Version) && x.Version.String() == y.Version.String() && x.ManifestID == y.ManifestID && x.Size == y.Size {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestSignedPacketRoundTrip(t *testing.T) {
	entries := []Entry{
		testEntry("myapp", "linux-amd64", "1.2.3"),
		testEntry("myapp", "darwin-arm64", "1.2.3"),
		testEntry("tool", "windows-amd64", "0.9.0-rc.1+b7"),
	}
	p, err := NewSignedPacket(testKey(), entries, testSeq)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(); err != nil {
		t.Fatal(err)
	}
	relay := p.EncodeRelay()
	golden(t, "packet.relay", relay)
	q, err := DecodeRelay(relay)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Time().Equal(testTime) || SeqNow(testTime) != testSeq {
		t.Fatalf("seq %d is %v, want %v", q.Seq, q.Time(), testTime)
	}
	if q.PublicKey != PublicKeyOf(testKey()) || q.Seq != testSeq || !bytes.Equal(q.Packet, p.Packet) || q.Sig != p.Sig {
		t.Fatal("relay round trip differs")
	}
	got, err := q.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if !entriesEqual(got, entries) {
		t.Fatalf("entries %+v", got)
	}
	e, err := q.Lookup(Target{"myapp", "stable", "darwin-arm64"})
	if err != nil || e.ManifestID != entries[1].ManifestID {
		t.Fatalf("lookup: %v", err)
	}
	if _, err := q.Lookup(Target{"myapp", "beta", "darwin-arm64"}); !errors.Is(err, ErrNoEntry) {
		t.Fatalf("lookup of a missing target: %v", err)
	}
	// The same entries in another order give the same bytes.
	p2, _ := NewSignedPacket(testKey(), []Entry{entries[2], entries[0], entries[1]}, testSeq)
	if !bytes.Equal(p2.EncodeRelay(), relay) {
		t.Fatal("packet depends on entry order")
	}
}

// TestPacketNames checks the DNS form a pkarr resolver sees: a compressed
// response whose TXT names are "<platform>.<channel>.<app>._rpe.<key>.".
func TestPacketNames(t *testing.T) {
	p, err := NewSignedPacket(testKey(), []Entry{testEntry("myapp", "linux-amd64", "1.2.3"), testEntry("myapp", "linux-arm64", "1.2.3")}, testSeq)
	if err != nil {
		t.Fatal(err)
	}
	var msg dnsmessage.Message
	if err := msg.Unpack(p.Packet); err != nil {
		t.Fatal(err)
	}
	if !msg.Header.Response || len(msg.Questions) != 0 || len(msg.Answers) != 2 {
		t.Fatalf("header %+v, %d answers", msg.Header, len(msg.Answers))
	}
	key := PublicKeyOf(testKey()).String()
	want := "linux-amd64.stable.myapp._rpe." + key + "."
	rr := msg.Answers[0]
	if rr.Header.Name.String() != want || rr.Header.Type != dnsmessage.TypeTXT || rr.Header.TTL != RecordTTL {
		t.Fatalf("record %v", rr.Header)
	}
	txt := rr.Body.(*dnsmessage.TXTResource).TXT
	wantTXT := "v=1.2.3 id=" + testEntry("myapp", "linux-amd64", "1.2.3").ManifestID.String() + " size=3000000"
	if len(txt) != 1 || txt[0] != wantTXT {
		t.Fatalf("TXT %q, want %q", txt, wantTXT)
	}
	// Compressed: the key appears once.
	if n := bytes.Count(p.Packet, []byte(key)); n != 1 {
		t.Fatalf("key appears %d times in the packet", n)
	}
}

func TestBEP44CrossCheck(t *testing.T) {
	sk := testKey()
	p, err := NewSignedPacket(sk, []Entry{testEntry("myapp", "linux-amd64", "1.2.3")}, testSeq)
	if err != nil {
		t.Fatal(err)
	}
	bv, err := bencode.Marshal(p.Packet)
	if err != nil {
		t.Fatal(err)
	}
	pub := ed25519.PublicKey(p.PublicKey[:])
	if !bep44.Verify(pub, nil, p.Seq, bv, p.Sig[:]) {
		t.Fatal("bep44.Verify refuses our signature")
	}
	if got := bep44.Sign(sk, nil, p.Seq, bv); !bytes.Equal(got, p.Sig[:]) {
		t.Fatal("bep44.Sign gives another signature")
	}
	// The item anacrolix would build agrees too, and so does its target.
	item, err := bep44.NewItem(p.Packet, nil, p.Seq, 0, sk)
	if err != nil {
		t.Fatal(err)
	}
	if item.Sig != p.Sig || bep44.Check(item) != nil {
		t.Fatal("bep44 item differs")
	}
	if bep44.MakeMutableTarget(p.PublicKey, nil) != item.Target() {
		t.Fatal("target")
	}
	// A salted signature is another message.
	if bep44.Verify(pub, []byte("x"), p.Seq, bv, p.Sig[:]) {
		t.Fatal("salted item verified")
	}
	if !bytes.Equal(SignableBytes(p.Seq, p.Packet), append([]byte("3:seqi"+itoa(int(p.Seq))+"e1:v"), bv...)) {
		t.Fatal("SignableBytes")
	}
	// ParseSignedPacket takes the parts of a BEP44 item.
	q, err := ParseSignedPacket(p.PublicKey, item.Seq, p.Packet, item.Sig[:])
	if err != nil || q.Seq != p.Seq {
		t.Fatal(err)
	}
	if _, err := ParseSignedPacket(p.PublicKey, item.Seq+1, p.Packet, item.Sig[:]); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other seq: %v", err)
	}
}

// packetWithOthers signs a packet holding an A record, a foreign TXT record,
// and one rpe entry, as another pkarr tool might have written it.
func packetWithOthers(t *testing.T, seq int64) *SignedPacket {
	t.Helper()
	key := PublicKeyOf(testKey()).String()
	name := func(s string) dnsmessage.Name { return dnsmessage.MustNewName(s) }
	e := testEntry("myapp", "linux-amd64", "1.0.0")
	msg := dnsmessage.Message{Header: dnsmessage.Header{Response: true}, Answers: []dnsmessage.Resource{
		{Header: dnsmessage.ResourceHeader{Name: name("www." + key + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
			Body: &dnsmessage.AResource{A: netip.MustParseAddr("127.0.0.7").As4()}},
		{Header: dnsmessage.ResourceHeader{Name: name("_foo." + key + "."), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET, TTL: 60},
			Body: &dnsmessage.TXTResource{TXT: []string{"hello"}}},
		{Header: dnsmessage.ResourceHeader{Name: name(strings.ToUpper(e.name(PublicKeyOf(testKey())))), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET, TTL: 60},
			Body: &dnsmessage.TXTResource{TXT: []string{"v=1.0.0 id=", e.ManifestID.String(), " size=3000000 future=yes"}}},
	}}
	b, err := msg.Pack()
	if err != nil {
		t.Fatal(err)
	}
	p := &SignedPacket{PublicKey: PublicKeyOf(testKey()), Seq: seq, Packet: b}
	copy(p.Sig[:], ed25519.Sign(testKey(), SignableBytes(seq, b)))
	return p
}

func TestMergeEntry(t *testing.T) {
	prev := packetWithOthers(t, 100)
	got, err := prev.Entries()
	if err != nil || len(got) != 1 || got[0].Version.String() != "1.0.0" {
		t.Fatalf("entries of a foreign packet: %v %v", got, err)
	}
	// Replace the entry, add one.
	p, err := MergeEntry(testKey(), prev, testEntry("myapp", "linux-amd64", "1.1.0"), 101)
	if err != nil {
		t.Fatal(err)
	}
	p, err = MergeEntry(testKey(), p, testEntry("myapp", "linux-arm64", "1.1.0"), 102)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(); err != nil || p.Seq != 102 {
		t.Fatal(err)
	}
	got, err = p.Entries()
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{testEntry("myapp", "linux-amd64", "1.1.0"), testEntry("myapp", "linux-arm64", "1.1.0")}
	if !entriesEqual(got, want) {
		t.Fatalf("entries %+v", got)
	}
	// The other records survive.
	var msg dnsmessage.Message
	if err := msg.Unpack(p.Packet); err != nil {
		t.Fatal(err)
	}
	var haveA, haveFoo bool
	for _, rr := range msg.Answers {
		switch b := rr.Body.(type) {
		case *dnsmessage.AResource:
			haveA = b.A == [4]byte{127, 0, 0, 7}
		case *dnsmessage.TXTResource:
			haveFoo = haveFoo || (strings.HasPrefix(rr.Header.Name.String(), "_foo.") && b.TXT[0] == "hello")
		}
	}
	if !haveA || !haveFoo || len(msg.Answers) != 4 {
		t.Fatalf("other records lost: %d answers, A %v, _foo %v", len(msg.Answers), haveA, haveFoo)
	}

	// Into nothing.
	p0, err := MergeEntry(testKey(), nil, testEntry("a", "b", "1.0.0"), 5)
	if err != nil || p0.Seq != 5 {
		t.Fatal(err)
	}
	// Errors.
	if _, err := MergeEntry(testKey(), p, testEntry("a", "b", "1.0.0"), 102); !errors.Is(err, ErrStaleSeq) {
		t.Errorf("same seq: %v", err)
	}
	if _, err := MergeEntry(otherKey(), p, testEntry("a", "b", "1.0.0"), 200); !errors.Is(err, ErrWrongKey) {
		t.Errorf("other key: %v", err)
	}
	bad := *p
	bad.Packet = bytes.Clone(p.Packet)
	bad.Packet[20] ^= 1
	if _, err := MergeEntry(testKey(), &bad, testEntry("a", "b", "1.0.0"), 200); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered previous: %v", err)
	}
}

func TestPacketTooLarge(t *testing.T) {
	var p *SignedPacket
	var err error
	n := 0
	for ; n < 50; n++ {
		var q *SignedPacket
		q, err = MergeEntry(testKey(), p, testEntry("app"+itoa(n), "linux-amd64", "1.2.3"), int64(n+1))
		if err != nil {
			break
		}
		p = q
	}
	if !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("after %d entries: %v, want ErrPacketTooLarge", n, err)
	}
	if len(p.Packet) > MaxPacketSize || n < 6 {
		t.Fatalf("%d entries fit in %d bytes", n, len(p.Packet))
	}
	t.Logf("%d entries fit in %d bytes", n, len(p.Packet))
}

func TestNewSignedPacketErrors(t *testing.T) {
	e := testEntry("myapp", "linux-amd64", "1.2.3")
	for _, tc := range []struct {
		name    string
		entries []Entry
	}{
		{"twice", []Entry{e, e}},
		{"no version", []Entry{{App: "a", Channel: "b", Platform: "c", Size: 1}}},
		{"bad name", []Entry{{App: "A", Channel: "b", Platform: "c", Version: e.Version, Size: 1}}},
		{"zero size", []Entry{{App: "a", Channel: "b", Platform: "c", Version: e.Version}}},
	} {
		if _, err := NewSignedPacket(testKey(), tc.entries, 1); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := NewSignedPacket(testKey(), nil, -1); err == nil {
		t.Error("negative seq accepted")
	}
}

func TestEntriesMalformed(t *testing.T) {
	key := PublicKeyOf(testKey())
	id := strings.Repeat("ab", 32)
	for _, tc := range []struct{ name, rrname, txt string }{
		{"two labels", "stable.myapp._rpe", "v=1.0.0 id=" + id + " size=1"},
		{"four labels", "x.linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=1"},
		{"bad label", "linux.stable.-app._rpe", "v=1.0.0 id=" + id + " size=1"},
		{"no v", "linux.stable.myapp._rpe", "id=" + id + " size=1"},
		{"bad v", "linux.stable.myapp._rpe", "v=1.0 id=" + id + " size=1"},
		{"short id", "linux.stable.myapp._rpe", "v=1.0.0 id=abcd size=1"},
		{"upper id", "linux.stable.myapp._rpe", "v=1.0.0 id=" + strings.ToUpper(id) + " size=1"},
		{"size zero", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=0"},
		{"size plus", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=+1"},
		{"size leading zero", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=01"},
		{"double space", "linux.stable.myapp._rpe", "v=1.0.0  id=" + id + " size=1"},
		{"dup key", "linux.stable.myapp._rpe", "v=1.0.0 v=1.0.0 id=" + id + " size=1"},
		{"exp zero", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=1 exp=0"},
		{"exp leading zero", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=1 exp=01"},
		{"exp not a number", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=1 exp=soon"},
		{"exp past 9999", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=1 exp=253402300800"},
		{"exp twice", "linux.stable.myapp._rpe", "v=1.0.0 id=" + id + " size=1 exp=5 exp=5"},
	} {
		msg := dnsmessage.Message{Header: dnsmessage.Header{Response: true}, Answers: []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(tc.rrname + "." + key.String() + "."), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET},
			Body:   &dnsmessage.TXTResource{TXT: []string{tc.txt}},
		}}}
		b, err := msg.Pack()
		if err != nil {
			t.Fatal(err)
		}
		p := &SignedPacket{PublicKey: key, Packet: b}
		if _, err := p.Entries(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tc.name, err)
		}
	}
	p := &SignedPacket{PublicKey: key, Packet: []byte{1, 2, 3}}
	if _, err := p.Entries(); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
	// Same target twice (different case) is ambiguous.
	e := testEntry("myapp", "linux-amd64", "1.2.3")
	mk := func(n string) dnsmessage.Resource {
		return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(n), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET},
			Body: &dnsmessage.TXTResource{TXT: []string{e.txt()}}}
	}
	msg := dnsmessage.Message{Answers: []dnsmessage.Resource{mk(e.name(key)), mk(strings.ToUpper(e.name(key)))}}
	b, _ := msg.Pack()
	if _, err := (&SignedPacket{PublicKey: key, Packet: b}).Entries(); !errors.Is(err, ErrMalformed) {
		t.Errorf("duplicate target: %v", err)
	}
}

func TestDecodeRelayErrors(t *testing.T) {
	p, _ := NewSignedPacket(testKey(), []Entry{testEntry("myapp", "linux-amd64", "1.2.3")}, testSeq)
	good := p.EncodeRelay()
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"header only short", good[:103], ErrMalformed},
		{"too long", append(bytes.Clone(good[:104]), make([]byte, 1001)...), ErrPacketTooLarge},
		{"negative seq", func() []byte { b := bytes.Clone(good); b[96] = 0x80; return b }(), ErrMalformed},
		{"flipped packet", func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 1; return b }(), ErrBadSignature},
		{"flipped seq", func() []byte { b := bytes.Clone(good); b[103] ^= 1; return b }(), ErrBadSignature},
		{"other key", append(PublicKeyOf(otherKey()).Ed25519(), good[32:]...), ErrBadSignature},
	} {
		if _, err := DecodeRelay(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// An empty DNS-less packet signs and verifies (a relay may hold one).
	q := &SignedPacket{PublicKey: PublicKeyOf(testKey()), Seq: 1}
	copy(q.Sig[:], ed25519.Sign(testKey(), SignableBytes(1, nil)))
	if _, err := DecodeRelay(q.EncodeRelay()); err != nil {
		t.Errorf("empty packet: %v", err)
	}
}

func TestEntryExpiry(t *testing.T) {
	e := testEntry("myapp", "linux-amd64", "1.2.3")
	e.Expires = testTime.Add(90 * 24 * time.Hour)
	p, err := NewSignedPacket(testKey(), []Entry{e, testEntry("old", "linux-amd64", "1.0.0")}, testSeq)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Lookup(e.Target())
	if err != nil || !got.Expires.Equal(e.Expires) {
		t.Fatalf("lookup: %v, %v; want expiry %v", got.Expires, err, e.Expires)
	}
	if got.Expired(e.Expires.Add(-time.Second)) || !got.Expired(e.Expires) {
		t.Error("Expired is wrong around the expiry")
	}
	// An entry without exp= (as written before rpe had it) never expires.
	old, err := p.Lookup(Target{"old", "stable", "linux-amd64"})
	if err != nil || !old.Expires.IsZero() || old.Expired(time.Unix(1<<40, 0)) {
		t.Fatalf("entry without exp: %v, %v", old.Expires, err)
	}
	if !strings.Contains(got.txt(), " exp=1775099045") {
		t.Errorf("txt %q lacks exp=<Unix seconds>", got.txt())
	}
}
