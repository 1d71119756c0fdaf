package release

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"golang.org/x/net/dns/dnsmessage"
)

// RecordLabel is the DNS label under the publisher key that holds rpe
// entries: an entry for app, channel and platform is a TXT record named
// "<platform>.<channel>.<app>._rpe.<z32 key>.".
const RecordLabel = "_rpe"

// RecordTTL is the TTL, in seconds, of the TXT records rpe writes.
const RecordTTL = 300

// RelayHeaderSize is the length of the relay form before the DNS packet:
// public key, signature and sequence number.
const RelayHeaderSize = PublicKeySize + ed25519.SignatureSize + 8

// Entry is one line of a publisher's signed record: the current release of
// one app, channel and platform.
type Entry struct {
	App, Channel, Platform string
	Version                *semver.Version
	ManifestID             ManifestID
	Size                   int64 // artifact size in bytes
	// Expires is when the publisher stops vouching for the entry (whole
	// seconds); a node refuses an entry at or after it. Zero means the entry
	// carries no expiry (records made before rpe wrote one).
	Expires time.Time
	// Rollout, 1..99, is the percentage of nodes that take this release (a
	// staged rollout, see Includes); 0 means all. TXT "ro=<percent>".
	Rollout int
}

// Expired reports whether the entry has an expiry and now is at or after it.
func (e Entry) Expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

// Target returns the app, channel and platform of the entry.
func (e Entry) Target() Target { return Target{e.App, e.Channel, e.Platform} }

func (e Entry) validate() error {
	if err := e.Target().Validate(); err != nil {
		return err
	}
	if e.Version == nil {
		return fmt.Errorf("version: %w: missing", ErrNotSemver)
	}
	if vs := e.Version.String(); len(vs) > MaxVersionLen {
		return fmt.Errorf("version %.20q…: %w: longer than %d characters", vs, ErrNotSemver, MaxVersionLen)
	}
	if e.Size <= 0 {
		return fmt.Errorf("size %d: %w", e.Size, ErrEmpty)
	}
	if !e.Expires.IsZero() && e.Expires.Unix() <= 0 {
		return fmt.Errorf("%w entry: expiry %v before 1970", ErrMalformed, e.Expires)
	}
	if e.Rollout < 0 || e.Rollout > 100 {
		return fmt.Errorf("%w entry: rollout %d%% out of range 0..100", ErrMalformed, e.Rollout)
	}
	return nil
}

// name returns the entry's DNS name under the key.
func (e Entry) name(pub PublicKey) string {
	return e.Platform + "." + e.Channel + "." + e.App + "." + RecordLabel + "." + pub.String() + "."
}

// txt returns the TXT value: "v=<version> id=<manifest ID hex> size=<bytes>",
// then " exp=<Unix seconds>" when the entry expires.
func (e Entry) txt() string {
	s := "v=" + e.Version.String() + " id=" + e.ManifestID.String() + " size=" + strconv.FormatInt(e.Size, 10)
	if !e.Expires.IsZero() {
		s += " exp=" + strconv.FormatInt(e.Expires.Unix(), 10)
	}
	if e.Rollout > 0 && e.Rollout < 100 {
		s += " ro=" + strconv.Itoa(e.Rollout)
	}
	return s
}

// maxUnixSeconds bounds an entry's expiry to the year 9999, so that every
// accepted value formats back to the same text.
const maxUnixSeconds = 253402300799

// SeqNow returns the sequence number for a packet signed at now: Unix time in
// microseconds, as pkarr uses.
func SeqNow(now time.Time) int64 { return now.UnixMicro() }

// NewSignedPacket builds and signs a packet holding entries (one per target;
// a target twice is an error) with sequence number seq. Entries are written
// sorted by app, channel and platform, so the same entries give the same
// bytes. It returns ErrPacketTooLarge if the DNS packet passes 1000 bytes.
func NewSignedPacket(sk ed25519.PrivateKey, entries []Entry, seq int64) (*SignedPacket, error) {
	return buildPacket(sk, nil, entries, seq)
}

// MergeEntry returns a new packet signed by sk with sequence number seq: the
// records of prev (nil for none) with e added, or replacing prev's entry for
// the same target. Other rpe entries and every other record in prev's answer
// section are kept; prev's other sections are dropped (pkarr uses answers
// only). prev must be signed by sk's key and carry a smaller seq.
func MergeEntry(sk ed25519.PrivateKey, prev *SignedPacket, e Entry, seq int64) (*SignedPacket, error) {
	if prev == nil {
		return NewSignedPacket(sk, []Entry{e}, seq)
	}
	if pub := PublicKeyOf(sk); prev.PublicKey != pub {
		return nil, fmt.Errorf("merge entry: previous packet signed by %s, not %s: %w (%w)", prev.PublicKey, pub, ErrWrongKey, ErrBadSignature)
	}
	if err := prev.Verify(); err != nil {
		return nil, fmt.Errorf("merge entry: previous packet: %w", err)
	}
	if seq <= prev.Seq {
		return nil, fmt.Errorf("merge entry: seq %d, previous %d: %w", seq, prev.Seq, ErrStaleSeq)
	}
	entries, others, err := parseRecords(prev.PublicKey, prev.Packet)
	if err != nil {
		return nil, fmt.Errorf("merge entry: previous packet: %w", err)
	}
	i := slices.IndexFunc(entries, func(x Entry) bool { return x.Target() == e.Target() })
	if i >= 0 {
		entries[i] = e
	} else {
		entries = append(entries, e)
	}
	return buildPacket(sk, others, entries, seq)
}

func buildPacket(sk ed25519.PrivateKey, others []dnsmessage.Resource, entries []Entry, seq int64) (*SignedPacket, error) {
	if len(sk) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signed packet: secret key has %d bytes, want %d", len(sk), ed25519.PrivateKeySize)
	}
	if seq < 0 {
		return nil, fmt.Errorf("signed packet: negative seq %d", seq)
	}
	pub := PublicKeyOf(sk)
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.Platform, b.Platform))
	})
	msg := dnsmessage.Message{
		Header:  dnsmessage.Header{Response: true, Authoritative: true},
		Answers: slices.Clone(others),
	}
	for i, e := range sorted {
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("signed packet: entry %s: %w", e.Target(), err)
		}
		if i > 0 && sorted[i-1].Target() == e.Target() {
			return nil, fmt.Errorf("signed packet: entry %s given twice", e.Target())
		}
		name, err := dnsmessage.NewName(e.name(pub))
		if err != nil {
			return nil, fmt.Errorf("signed packet: entry %s: %w", e.Target(), err)
		}
		msg.Answers = append(msg.Answers, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: name, Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET, TTL: RecordTTL},
			Body:   &dnsmessage.TXTResource{TXT: []string{e.txt()}},
		})
	}
	packet, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("signed packet: encode DNS packet: %w", err)
	}
	if len(packet) > MaxPacketSize {
		return nil, fmt.Errorf("signed packet with %d entries and %d other records: %w: %d bytes", len(sorted), len(others), ErrPacketTooLarge, len(packet))
	}
	p := &SignedPacket{PublicKey: pub, Seq: seq, Packet: packet}
	copy(p.Sig[:], ed25519.Sign(sk, SignableBytes(seq, packet)))
	return p, nil
}

// Entries returns the rpe entries of the packet in packet order. Records
// that are not rpe TXT records are ignored; an rpe record that does not
// follow the format (docs/FORMATS.md) is an error wrapping ErrMalformed, and
// so is a target listed twice. Entries does not check the signature: the
// packet came from DecodeRelay or ParseSignedPacket, or Verify it first.
func (p *SignedPacket) Entries() ([]Entry, error) {
	entries, _, err := parseRecords(p.PublicKey, p.Packet)
	return entries, err
}

// Lookup returns the entry for t, or an error wrapping ErrNoEntry.
func (p *SignedPacket) Lookup(t Target) (Entry, error) {
	entries, err := p.Entries()
	if err != nil {
		return Entry{}, err
	}
	for _, e := range entries {
		if e.Target() == t {
			return e, nil
		}
	}
	if n := p.sealedCount(); n > 0 {
		return Entry{}, fmt.Errorf("signed packet of %s: %w %s; it has %d private entries: %w", p.PublicKey, ErrNoEntry, t, n, ErrNeedSecret)
	}
	return Entry{}, fmt.Errorf("signed packet of %s: %w %s", p.PublicKey, ErrNoEntry, t)
}

// parseRecords splits the answers of a DNS packet into rpe entries and the
// other records.
func parseRecords(pub PublicKey, packet []byte) (entries []Entry, others []dnsmessage.Resource, err error) {
	if len(packet) > MaxPacketSize {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, len(packet))
	}
	var msg dnsmessage.Message
	if err := msg.Unpack(packet); err != nil {
		return nil, nil, fmt.Errorf("%w DNS packet: %v", ErrMalformed, err)
	}
	suffix := "." + RecordLabel + "." + pub.String() + "."
	for _, rr := range msg.Answers {
		name := strings.ToLower(rr.Header.Name.String())
		if rr.Header.Type != dnsmessage.TypeTXT || !strings.HasSuffix(name, suffix) {
			others = append(others, rr)
			continue
		}
		body, ok := rr.Body.(*dnsmessage.TXTResource)
		if !ok {
			return nil, nil, fmt.Errorf("%w rpe record %q: TXT without TXT data", ErrMalformed, rr.Header.Name.String())
		}
		e, err := parseEntry(strings.TrimSuffix(name, suffix), body.TXT)
		if err != nil {
			return nil, nil, fmt.Errorf("%w rpe record %q: %w", ErrMalformed, rr.Header.Name.String(), err)
		}
		for _, x := range entries {
			if x.Target() == e.Target() {
				return nil, nil, fmt.Errorf("%w rpe record: %s listed twice", ErrMalformed, e.Target())
			}
		}
		entries = append(entries, e)
	}
	return entries, others, nil
}

// parseEntry parses the labels before "._rpe.<key>." and the TXT strings.
func parseEntry(labels string, txt []string) (Entry, error) {
	var e Entry
	parts := strings.Split(labels, ".")
	if len(parts) != 3 {
		return e, fmt.Errorf("want <platform>.<channel>.<app> before %s, got %d labels", RecordLabel, len(parts))
	}
	e.Platform, e.Channel, e.App = parts[0], parts[1], parts[2]
	if err := e.Target().Validate(); err != nil {
		return e, err
	}
	// Like SPF and DKIM, the character-strings of one record form one value.
	value := strings.Join(txt, "")
	var haveV, haveID, haveSize, haveExp, haveRo bool
	for _, f := range strings.Split(value, " ") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return e, fmt.Errorf("field %q is not key=value", f)
		}
		var dup bool
		switch k {
		case "v":
			dup, haveV = haveV, true
			ver, err := parseCanonicalVersion(v)
			if err != nil {
				return e, err
			}
			e.Version = ver
		case "id":
			dup, haveID = haveID, true
			if len(v) != 64 || strings.ToLower(v) != v {
				return e, fmt.Errorf("id %q: want 64 lower-case hex digits", v)
			}
			id, err := ParseManifestID(v)
			if err != nil {
				return e, err
			}
			e.ManifestID = id
		case "size":
			dup, haveSize = haveSize, true
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || strconv.FormatInt(n, 10) != v {
				return e, fmt.Errorf("size %q: want a positive decimal integer", v)
			}
			e.Size = n
		case "exp":
			dup, haveExp = haveExp, true
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || n > maxUnixSeconds || strconv.FormatInt(n, 10) != v {
				return e, fmt.Errorf("exp %q: want Unix seconds, a positive decimal integer", v)
			}
			e.Expires = time.Unix(n, 0).UTC()
		case "ro":
			dup, haveRo = haveRo, true
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 99 || strconv.Itoa(n) != v {
				return e, fmt.Errorf("ro %q: want a rollout percentage, 1..99", v)
			}
			e.Rollout = n
		default:
			// Unknown keys are left for later versions of the format.
		}
		if dup {
			return e, fmt.Errorf("key %q given twice", k)
		}
	}
	if !haveV || !haveID || !haveSize {
		return e, fmt.Errorf("value %q lacks one of v=, id=, size=", value)
	}
	return e, nil
}

// ParseSignedPacket makes a SignedPacket from the parts of a BEP44 mutable
// item (nil salt) and verifies it: size and signature by pub.
func ParseSignedPacket(pub PublicKey, seq int64, packet, sig []byte) (*SignedPacket, error) {
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w signed packet: signature has %d bytes, want %d", ErrMalformed, len(sig), ed25519.SignatureSize)
	}
	if seq < 0 {
		return nil, fmt.Errorf("%w signed packet: negative seq %d", ErrMalformed, seq)
	}
	p := &SignedPacket{PublicKey: pub, Seq: seq, Packet: bytes.Clone(packet)}
	copy(p.Sig[:], sig)
	if err := p.Verify(); err != nil {
		return nil, err
	}
	return p, nil
}

// EncodeRelay returns the relay form of the packet, as pkarr relays and
// caches store it: public key (32) ‖ signature (64) ‖ seq (8, big-endian
// microseconds) ‖ DNS packet.
func (p *SignedPacket) EncodeRelay() []byte {
	b := make([]byte, 0, RelayHeaderSize+len(p.Packet))
	b = append(b, p.PublicKey[:]...)
	b = append(b, p.Sig[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Seq))
	return append(b, p.Packet...)
}

// DecodeRelay decodes the relay form and verifies the signature. It does not
// parse the DNS packet: call Entries for that.
func DecodeRelay(b []byte) (*SignedPacket, error) {
	if len(b) < RelayHeaderSize {
		return nil, fmt.Errorf("%w signed packet: %d bytes, want at least %d", ErrMalformed, len(b), RelayHeaderSize)
	}
	if len(b) > RelayHeaderSize+MaxPacketSize {
		return nil, fmt.Errorf("%w signed packet: %d bytes: %w", ErrMalformed, len(b), ErrPacketTooLarge)
	}
	var pub PublicKey
	copy(pub[:], b)
	seq := binary.BigEndian.Uint64(b[PublicKeySize+ed25519.SignatureSize:])
	if int64(seq) < 0 {
		return nil, fmt.Errorf("%w signed packet: seq %d out of range", ErrMalformed, seq)
	}
	return ParseSignedPacket(pub, int64(seq), b[RelayHeaderSize:], b[PublicKeySize:PublicKeySize+ed25519.SignatureSize])
}
