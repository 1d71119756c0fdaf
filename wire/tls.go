package wire

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ALPN is the TLS application protocol of rpe peer connections.
const ALPN = "rpe/1"

// ProtocolVersion is the version this package speaks, carried in Hello.
const ProtocolVersion = 1

// serverName is the fixed TLS server name; identity comes from the node key.
const serverName = "rpe"

// NodeID is a node's ed25519 public key, the identity its TLS certificate
// proves. It is not the publisher's key.
type NodeID [ed25519.PublicKeySize]byte

// NodeIDOf returns the node ID of an ed25519 public key.
func NodeIDOf(pub ed25519.PublicKey) NodeID {
	var id NodeID
	copy(id[:], pub)
	return id
}

// String returns the first 8 hex digits, for logs.
func (id NodeID) String() string { return hex.EncodeToString(id[:4]) }

// Full returns all 64 hex digits.
func (id NodeID) Full() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID, which stands for "any node".
func (id NodeID) IsZero() bool { return id == NodeID{} }

// PublicKey returns the node ID as an ed25519 public key.
func (id NodeID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(id[:]) }

// ParseNodeID parses 64 hex digits.
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("node ID %q: want 64 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// nodeCert makes the node's self-signed certificate. It is deterministic:
// the serial comes from the key and ed25519 signatures have no randomness.
// Validity dates are not checked by peers (the key is the identity), so they
// span all time to keep nodes with wrong clocks working.
func nodeCert(key ed25519.PrivateKey) (tls.Certificate, error) {
	if len(key) != ed25519.PrivateKeySize {
		return tls.Certificate{}, fmt.Errorf("wire: node key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	pub := key.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(pub[:16]),
		Subject:      pkix.Name{CommonName: "rpe node " + NodeIDOf(pub).Full()},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("wire: node certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// verifyNodeCert checks that the peer presented exactly one self-signed
// ed25519 certificate and, unless expect is zero, that its key is expect.
// The TLS handshake itself proves the peer holds the private key.
func verifyNodeCert(raw [][]byte, expect NodeID) (NodeID, error) {
	if len(raw) != 1 {
		return NodeID{}, fmt.Errorf("%w: peer sent %d certificates, want 1", ErrBadNodeID, len(raw))
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return NodeID{}, fmt.Errorf("%w: peer certificate: %v", ErrBadNodeID, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return NodeID{}, fmt.Errorf("%w: peer key is %T, want ed25519", ErrBadNodeID, cert.PublicKey)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return NodeID{}, fmt.Errorf("%w: peer certificate not self-signed: %v", ErrBadNodeID, err)
	}
	id := NodeIDOf(pub)
	if !expect.IsZero() && id != expect {
		return id, fmt.Errorf("%w: peer is %s, want %s", ErrBadNodeID, id, expect)
	}
	return id, nil
}

// checkALPN refuses a connection that did not negotiate rpe/1.
func checkALPN(cs tls.ConnectionState) error {
	if cs.NegotiatedProtocol != ALPN {
		return fmt.Errorf("%w: ALPN %q, want %q", ErrProtocol, cs.NegotiatedProtocol, ALPN)
	}
	return nil
}

// ServerTLS returns the TLS configuration a node listens with: its
// self-signed certificate, ALPN rpe/1 only, TLS 1.3, and a client
// certificate required from every peer and checked to be a valid node
// certificate (any node ID).
func ServerTLS(key ed25519.PrivateKey) (*tls.Config, error) {
	cert, err := nodeCert(key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyNodeCert(raw, NodeID{})
			return err
		},
		VerifyConnection: checkALPN,
		// A resumed session would skip VerifyPeerCertificate.
		SessionTicketsDisabled: true,
	}, nil
}

// ClientTLS returns the TLS configuration a node dials with: its
// self-signed certificate as the client certificate, ALPN rpe/1 only, TLS
// 1.3, and the server's certificate checked to carry the key expect. A zero
// expect accepts any valid node certificate.
func ClientTLS(key ed25519.PrivateKey, expect NodeID) (*tls.Config, error) {
	cert, err := nodeCert(key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
		ServerName:   serverName,
		// There is no CA: the certificate is checked against the node key
		// in VerifyPeerCertificate instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyNodeCert(raw, expect)
			return err
		},
		VerifyConnection: checkALPN,
	}, nil
}

// peerID returns the node ID of a completed handshake's peer.
func peerID(cs tls.ConnectionState) (NodeID, error) {
	if len(cs.PeerCertificates) != 1 {
		return NodeID{}, errors.New("wire: handshake without a peer certificate")
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return NodeID{}, errors.New("wire: peer certificate without an ed25519 key")
	}
	return NodeIDOf(pub), nil
}
