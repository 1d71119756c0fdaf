package release

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// A private swarm shares a secret between the publisher and its nodes. From
// the secret come four keys (HKDF-SHA256, one info string each, see
// docs/FORMATS.md): one that
// encrypts record entries (AES-256-GCM), one that names them, one that
// derives swarm IDs, and one with which two nodes prove to each other that
// they know the secret. Nothing an outsider sees (the DHT record, the swarm
// IDs announced, the proofs exchanged) tells it the secret, a version, a
// manifest ID or where the peers are.

// SecretSize is the length in bytes of a shared secret.
const SecretSize = 32

// SecretTextLen is the length of a shared secret in z-base-32 text form.
const SecretTextLen = 52

// Errors of private swarms.
var (
	// ErrBadSecret is matched by every shared secret parsing error.
	ErrBadSecret = errors.New("bad shared secret")
	// ErrWrongSecret means a record holds private entries and none of them
	// opens with the secret given.
	ErrWrongSecret = errors.New("no private entry opens with this shared secret (wrong secret?)")
	// ErrNeedSecret means a record holds private entries only, for a node
	// that has no shared secret.
	ErrNeedSecret = errors.New("the record's entries are private: this node needs the shared secret")
)

// Secret is a private swarm's shared secret.
type Secret [SecretSize]byte

// String returns the secret in z-base-32 (52 characters).
func (s Secret) String() string { return encodeZ32(s[:]) }

// GenerateSecret makes a new shared secret from rand (crypto/rand.Reader
// when nil).
func GenerateSecret(r io.Reader) (Secret, error) {
	var s Secret
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, s[:]); err != nil {
		return s, fmt.Errorf("generate secret: %w", err)
	}
	return s, nil
}

// ParseSecret parses the 52-character z-base-32 form of a secret; spaces
// and a trailing newline around it are ignored.
func ParseSecret(text string) (Secret, error) {
	var s Secret
	text = strings.TrimSpace(text)
	if len(text) != SecretTextLen {
		return s, fmt.Errorf("%w: %d characters, want %d", ErrBadSecret, len(text), SecretTextLen)
	}
	b, err := decodeZ32(text, SecretSize)
	if err != nil {
		return s, fmt.Errorf("%w: %v", ErrBadSecret, err)
	}
	copy(s[:], b)
	return s, nil
}

// WriteSecretFile writes s to path as its text and a newline, with mode
// 0600, never overwriting (as WriteSecretKeyFile).
func WriteSecretFile(path string, s Secret) error {
	return writePrivateFile(path, "secret", []byte(s.String()+"\n"))
}

// ReadSecretFile reads a secret written by WriteSecretFile, refusing a file
// group or others may access (ErrKeyPermissions, with the chmod to run).
func ReadSecretFile(path string) (Secret, error) {
	b, err := readPrivateFile(path, "secret", "shared secret")
	if err != nil {
		return Secret{}, err
	}
	s, err := ParseSecret(string(b))
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %s: %w", path, err)
	}
	return s, nil
}

// HKDF info strings of the keys derived from a secret.
const (
	infoEntryKey  = "rpe private entries v1"
	infoLabelKey  = "rpe private entry names v1"
	infoSwarmKey  = "rpe private swarm ids v1"
	infoProofKey  = "rpe private proof v1"
	hkdfSalt      = "rpe private swarm v1"
	sealedAADHead = "rpe sealed entry v1\x00"
)

// Private holds the keys of one private swarm. They come from the secret
// alone, not from the publisher key, so a swarm stays the same across a
// rotation of the publisher's key; sealed entries are bound to the key that
// signs their packet through the AEAD's additional data. It is safe for
// concurrent use.
type Private struct {
	aead                   cipher.AEAD
	label, swarm, proofKey []byte
}

// NewPrivate derives the keys of the private swarm of secret s.
func NewPrivate(s Secret) (*Private, error) {
	key := func(info string) []byte {
		k, err := hkdf.Key(sha256.New, s[:], []byte(hkdfSalt), info, 32)
		if err != nil {
			panic("hkdf: " + err.Error()) // only for lengths above 255*32
		}
		return k
	}
	block, err := aes.NewCipher(key(infoEntryKey))
	if err != nil {
		return nil, fmt.Errorf("private swarm: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("private swarm: %w", err)
	}
	return &Private{aead: aead, label: key(infoLabelKey), swarm: key(infoSwarmKey), proofKey: key(infoProofKey)}, nil
}

// ProofKey returns the key with which nodes of the swarm prove they know
// the secret (see wire.Conn.Prove).
func (p *Private) ProofKey() []byte { return bytes.Clone(p.proofKey) }

// SwarmPrefix separates private swarm IDs from every other use of the key.
const privateSwarmPrefix = "rpe/swarm/private/v1:"

// SwarmID is the swarm ID of a release in the private swarm: the first 20
// bytes of HMAC-SHA256(swarm key, prefix ‖ manifest ID). Without the secret
// it cannot be told from random, nor linked to the manifest ID.
func (p *Private) SwarmID(id ManifestID) SwarmID {
	m := hmac.New(sha256.New, p.swarm)
	m.Write([]byte(privateSwarmPrefix))
	m.Write(id[:])
	var s SwarmID
	copy(s[:], m.Sum(nil))
	return s
}

// sealedLabel is the DNS label of t's sealed entry: 16 z-base-32 characters
// of HMAC-SHA256(label key, "app/channel/platform"), so the name says
// nothing of the target but a new entry for it replaces the old one.
func (p *Private) sealedLabel(t Target) string {
	m := hmac.New(sha256.New, p.label)
	m.Write([]byte(t.String()))
	return encodeZ32(m.Sum(nil)[:10])
}

func (p *Private) aad(pub PublicKey, label string) []byte {
	b := make([]byte, 0, len(sealedAADHead)+PublicKeySize+len(label))
	b = append(b, sealedAADHead...)
	b = append(b, pub[:]...)
	return append(b, label...)
}

// seal returns the TXT value of e's sealed entry: "x=" and the unpadded
// base64url of nonce ‖ AES-256-GCM(plaintext), where the plaintext is the
// public entry's name labels and value, "<platform>.<channel>.<app> v=… id=…
// size=… [exp=…]".
func (p *Private) seal(e Entry, pub PublicKey, label string, r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	nonce := make([]byte, p.aead.NonceSize(), p.aead.NonceSize()+256)
	if _, err := io.ReadFull(r, nonce); err != nil {
		return "", fmt.Errorf("seal entry: %w", err)
	}
	plain := e.Platform + "." + e.Channel + "." + e.App + " " + e.txt()
	ct := p.aead.Seal(nonce, nonce, []byte(plain), p.aad(pub, label))
	return "x=" + base64.RawURLEncoding.EncodeToString(ct), nil
}

// open decrypts a sealed TXT value named label in pub's packet.
func (p *Private) open(pub PublicKey, label, value string) (Entry, error) {
	v, ok := strings.CutPrefix(value, "x=")
	if !ok {
		return Entry{}, fmt.Errorf("sealed value does not start with x=")
	}
	ct, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return Entry{}, fmt.Errorf("sealed value: %v", err)
	}
	if len(ct) < p.aead.NonceSize()+p.aead.Overhead() {
		return Entry{}, fmt.Errorf("sealed value of %d bytes is too short", len(ct))
	}
	plain, err := p.aead.Open(nil, ct[:p.aead.NonceSize()], ct[p.aead.NonceSize():], p.aad(pub, label))
	if err != nil {
		return Entry{}, errWrongKeyForEntry
	}
	labels, txt, ok := strings.Cut(string(plain), " ")
	if !ok {
		return Entry{}, fmt.Errorf("sealed plaintext has no value")
	}
	e, err := parseEntry(labels, []string{txt})
	if err != nil {
		return Entry{}, err
	}
	if p.sealedLabel(e.Target()) != label {
		return Entry{}, fmt.Errorf("sealed entry for %s under another target's name", e.Target())
	}
	return e, nil
}

// errWrongKeyForEntry is an entry that does not open with the key tried.
var errWrongKeyForEntry = errors.New("does not open")

// SealedLabel is the DNS label under the publisher key that holds private
// (sealed) entries: "<16 z-base-32 characters>._rpes.<z32 key>.".
const SealedLabel = "_rpes"

// maxTXTString is the longest character-string of a TXT record.
const maxTXTString = 255

// splitTXT cuts s into TXT character-strings; parsers join them again.
func splitTXT(s string) []string {
	var out []string
	for len(s) > maxTXTString {
		out = append(out, s[:maxTXTString])
		s = s[maxTXTString:]
	}
	return append(out, s)
}

// sealedName returns the DNS name of t's sealed entry under pub.
func (p *Private) sealedName(pub PublicKey, t Target) string {
	return p.sealedLabel(t) + "." + SealedLabel + "." + pub.String() + "."
}

// MergeSealedEntry is MergeEntry for a private swarm: e goes into the packet
// encrypted with priv's entry key, under a name that only holders of the
// secret can link to its target, replacing the sealed entry for the same
// target. Public entries and everything else in prev are kept, so public
// and private releases live side by side under one key. rand supplies the
// nonce (crypto/rand.Reader when nil).
func MergeSealedEntry(sk ed25519.PrivateKey, prev *SignedPacket, e Entry, seq int64, priv *Private, rand io.Reader) (*SignedPacket, error) {
	pub := PublicKeyOf(sk)
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("merge sealed entry %s: %w", e.Target(), err)
	}
	var entries []Entry
	var others []dnsmessage.Resource
	if prev != nil {
		if prev.PublicKey != pub {
			return nil, fmt.Errorf("merge sealed entry: previous packet signed by %s, not %s: %w (%w)", prev.PublicKey, pub, ErrWrongKey, ErrBadSignature)
		}
		if err := prev.Verify(); err != nil {
			return nil, fmt.Errorf("merge sealed entry: previous packet: %w", err)
		}
		if seq <= prev.Seq {
			return nil, fmt.Errorf("merge sealed entry: seq %d, previous %d: %w", seq, prev.Seq, ErrStaleSeq)
		}
		var err error
		if entries, others, err = parseRecords(prev.PublicKey, prev.Packet); err != nil {
			return nil, fmt.Errorf("merge sealed entry: previous packet: %w", err)
		}
	}
	name := priv.sealedName(pub, e.Target())
	others = slices.DeleteFunc(others, func(rr dnsmessage.Resource) bool {
		return rr.Header.Type == dnsmessage.TypeTXT && strings.EqualFold(rr.Header.Name.String(), name)
	})
	value, err := priv.seal(e, pub, priv.sealedLabel(e.Target()), rand)
	if err != nil {
		return nil, err
	}
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, fmt.Errorf("merge sealed entry: %w", err)
	}
	others = append(others, dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: n, Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET, TTL: RecordTTL},
		Body:   &dnsmessage.TXTResource{TXT: splitTXT(value)},
	})
	return buildPacket(sk, others, entries, seq)
}

// sealedRecords returns the sealed TXT records of the packet: label and
// joined value.
func (p *SignedPacket) sealedRecords() ([][2]string, error) {
	_, others, err := parseRecords(p.PublicKey, p.Packet)
	if err != nil {
		return nil, err
	}
	suffix := "." + SealedLabel + "." + p.PublicKey.String() + "."
	var out [][2]string
	for _, rr := range others {
		name := strings.ToLower(rr.Header.Name.String())
		label, ok := strings.CutSuffix(name, suffix)
		if rr.Header.Type != dnsmessage.TypeTXT || !ok {
			continue
		}
		body, ok := rr.Body.(*dnsmessage.TXTResource)
		if !ok || strings.Contains(label, ".") {
			return nil, fmt.Errorf("%w sealed record %q", ErrMalformed, rr.Header.Name.String())
		}
		out = append(out, [2]string{label, strings.Join(body.TXT, "")})
	}
	return out, nil
}

// SealedEntries opens the packet's sealed entries with priv. A sealed entry
// that does not open is skipped (another secret's); when there are sealed
// entries and none opens, the error wraps ErrWrongSecret. An entry that
// opens but does not follow the format wraps ErrMalformed.
func (p *SignedPacket) SealedEntries(priv *Private) ([]Entry, error) {
	recs, err := p.sealedRecords()
	if err != nil {
		return nil, err
	}
	var entries []Entry
	for _, r := range recs {
		e, err := priv.open(p.PublicKey, r[0], r[1])
		if errors.Is(err, errWrongKeyForEntry) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w sealed record %s: %w", ErrMalformed, r[0], err)
		}
		for _, x := range entries {
			if x.Target() == e.Target() {
				return nil, fmt.Errorf("%w sealed record: %s listed twice", ErrMalformed, e.Target())
			}
		}
		entries = append(entries, e)
	}
	if len(recs) > 0 && len(entries) == 0 {
		return nil, fmt.Errorf("signed packet of %s: %d private entries: %w", p.PublicKey, len(recs), ErrWrongSecret)
	}
	return entries, nil
}

// LookupSealed returns the sealed entry for t, opened with priv. It fails
// with ErrWrongSecret when the packet has sealed entries and none opens,
// and with ErrNoEntry when none of those that open is for t.
func (p *SignedPacket) LookupSealed(t Target, priv *Private) (Entry, error) {
	entries, err := p.SealedEntries(priv)
	if err != nil {
		return Entry{}, err
	}
	for _, e := range entries {
		if e.Target() == t {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("signed packet of %s: %w %s among %d private entries", p.PublicKey, ErrNoEntry, t, len(entries))
}

// SealedCount returns how many sealed (private) entries the packet holds,
// whoever can open them.
func (p *SignedPacket) SealedCount() (int, error) {
	recs, err := p.sealedRecords()
	return len(recs), err
}

// sealedCount is SealedCount, 0 when the packet does not parse.
func (p *SignedPacket) sealedCount() int {
	n, _ := p.SealedCount()
	return n
}
