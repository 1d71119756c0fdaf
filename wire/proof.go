package wire

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"

	"github.com/quic-go/quic-go"
)

// Proof of a private swarm's secret.
//
// In a private swarm both ends of a connection prove they know the shared
// secret before anything else happens on it: before a Hello, a request or an
// answer. The dialer opens the connection's first bidirectional stream and
// sends a Proof frame; the listener checks it and only then sends its own
// and closes the stream; the dialer checks that. A proof is
//
//	HMAC-SHA256(proof key, "rpe proof v1\x00" ‖ role ‖ exporter ‖ dialer ID ‖ listener ID)
//
// where role is 'D' or 'L', and exporter is 32 bytes of TLS keying material
// exported from this connection's session (label "EXPORTER-rpe-proof", no
// context; RFC 8446 §7.5). The proof is bound to the session and to both
// node keys, so it cannot be replayed on another connection or relayed by a
// third node, and it shows nothing of the secret. A peer that sends anything
// else, a wrong proof or nothing within HelloTimeout is disconnected with
// CodeNoProof (or CodeProtocol for a malformed frame).

const (
	proofContext  = "rpe proof v1\x00"
	exporterLabel = "EXPORTER-rpe-proof"
)

// proofMAC computes the proof of role ('D' or 'L') on this connection.
func (c *Conn) proofMAC(key []byte, role byte) ([]byte, error) {
	cs := c.qc.ConnectionState().TLS
	ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("wire: proof: export keying material: %w", err)
	}
	dialer, listener := c.local, c.remote
	if !c.dialed {
		dialer, listener = c.remote, c.local
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(proofContext))
	m.Write([]byte{role})
	m.Write(ekm)
	m.Write(dialer[:])
	m.Write(listener[:])
	return m.Sum(nil), nil
}

// Prove proves to the peer that this node knows the private swarm's secret
// and checks that the peer does, before anything else is sent or served on
// the connection: call it right after Dial or Accept, and call Send, Serve,
// GetManifest or GetChunk only once it has returned nil. key is the swarm's
// proof key (release.Private.ProofKey), the same on both ends. The whole
// exchange must end within HelloTimeout (and ctx). A peer whose proof is
// missing or wrong is disconnected with CodeNoProof and the error matches
// ErrNoProof; the peer's view of the same failure matches it too.
func (c *Conn) Prove(ctx context.Context, key []byte) error {
	if len(key) == 0 {
		return errors.New("wire: prove: empty proof key")
	}
	ctx, cancel := context.WithTimeout(ctx, c.lim.HelloTimeout)
	defer cancel()
	what := op{kind: TypeProof, peer: c.remote}
	var err error
	if c.dialed {
		err = c.proveDialer(ctx, what, key)
	} else {
		err = c.proveListener(ctx, what, key)
	}
	if err != nil && c.qc.Context().Err() == nil {
		// Whatever went wrong, an unproven peer is dropped.
		c.closeWith(CodeNoProof, "no proof of the swarm secret", fmt.Errorf("%w: %w", ErrNoProof, err))
	}
	return err
}

func (c *Conn) proveDialer(ctx context.Context, what op, key []byte) error {
	mine, err := c.proofMAC(key, 'D')
	if err != nil {
		return err
	}
	s, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return c.streamErr(ctx, what, err)
	}
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(quic.StreamErrorCode(CodeCancelled))
		s.CancelWrite(quic.StreamErrorCode(CodeCancelled))
	})
	defer stop()
	if _, err := s.Write(EncodeFrame(TypeProof, mine)); err != nil {
		return c.streamErr(ctx, what, err)
	}
	s.Close()
	theirs, err := c.readProof(ctx, what, s)
	if err != nil {
		return err
	}
	return c.checkProof(key, 'L', theirs)
}

func (c *Conn) proveListener(ctx context.Context, what op, key []byte) error {
	s, err := c.qc.AcceptStream(ctx)
	if err != nil {
		if c.qc.Context().Err() == nil && ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, c.fail(fmt.Errorf("%w: none within %v", ErrNoProof, c.lim.HelloTimeout)))
		}
		return c.streamErr(ctx, what, err)
	}
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(quic.StreamErrorCode(CodeCancelled))
		s.CancelWrite(quic.StreamErrorCode(CodeCancelled))
	})
	defer stop()
	theirs, err := c.readProof(ctx, what, s)
	if err != nil {
		return err
	}
	if err := c.checkProof(key, 'D', theirs); err != nil {
		return err
	}
	mine, err := c.proofMAC(key, 'L')
	if err != nil {
		return err
	}
	if _, err := s.Write(EncodeFrame(TypeProof, mine)); err != nil {
		return c.streamErr(ctx, what, err)
	}
	s.Close()
	return nil
}

// readProof reads the peer's Proof frame, the only thing its stream may
// hold. Anything else (a request, a malformed frame, the end of the stream,
// silence) is no proof.
func (c *Conn) readProof(ctx context.Context, what op, s *quic.Stream) ([]byte, error) {
	if d, ok := ctx.Deadline(); ok {
		s.SetReadDeadline(d)
	}
	_, p, err := readFrame(s, func(t Type) int {
		if t == TypeProof {
			return proofSize
		}
		return -1
	})
	if err == nil && len(p) != proofSize {
		err = fmt.Errorf("%w: proof of %d bytes, want %d", ErrProtocol, len(p), proofSize)
	}
	switch {
	case err == nil:
		return p, nil
	case c.qc.Context().Err() != nil:
		return nil, c.streamErr(ctx, what, err)
	case ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
		return nil, fmt.Errorf("%s: %w", what, c.fail(fmt.Errorf("%w: none within %v", ErrNoProof, c.lim.HelloTimeout)))
	case peerFault(err):
		return nil, fmt.Errorf("%s: %w", what, c.fail(fmt.Errorf("%w: %v", ErrNoProof, err)))
	}
	return nil, c.streamErr(ctx, what, err)
}

// checkProof compares the peer's proof with the one expected of role.
func (c *Conn) checkProof(key []byte, role byte, theirs []byte) error {
	want, err := c.proofMAC(key, role)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, theirs) {
		return fmt.Errorf("wire: peer %s: %w", c.remote, c.fail(fmt.Errorf("%w: wrong proof (another secret)", ErrNoProof)))
	}
	return nil
}
