package wire

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/release"
)

// Handler answers a peer's requests and receives its one-way messages. Its
// methods are called from several goroutines at once.
type Handler interface {
	// Manifest returns the signed manifest with the given ID, or an error
	// matching ErrNotFound (or ErrBusy). The slice is only read.
	Manifest(id release.ManifestID) ([]byte, error)
	// Chunk returns chunk index of a release. buf is scratch space with len
	// 0: the handler may grow it (slices.Grow) and fill it. The returned
	// slice passes to the Conn, which may hand it out again as a later buf,
	// so it must not be kept or shared by the handler. An error matching
	// ErrBadIndex (index outside the release) disconnects the peer; one
	// matching ErrNotFound or ErrBusy is only reported to it.
	Chunk(id release.ManifestID, index uint32, buf []byte) ([]byte, error)
	// Notify receives the peer's one-way messages (*Hello, *Have, *Record,
	// *Peers), one at a time and in the order sent. While it runs no further
	// message is read from that peer.
	Notify(from NodeID, m Message)
}

// ChunkSentHandler is a Handler that is told when the answer to a Chunk
// call that returned no error is done with, so it can cap the chunk uploads
// in flight and count only what reached the peer: a QUIC stream write
// returns once its data has gone out at the connection's pace.
type ChunkSentHandler interface {
	Handler
	// ChunkSent is called once per Chunk call that returned no error. err
	// is nil when the whole answer was written to the stream and the stream
	// ended; otherwise it says why the answer was not sent in full (the
	// chunk was over MaxChunk, the peer cancelled the request, the write
	// took longer than AnswerTimeout, the connection closed).
	ChunkSent(id release.ManifestID, index uint32, err error)
}

// Conn is one rpe peer connection, dialled or accepted; both ends are alike.
// It is safe for concurrent use.
type Conn struct {
	qc     *quic.Conn
	lim    Limits
	local  NodeID
	remote NodeID
	dialed bool // this end dialled (the proof of a secret needs the roles)

	sendSem   chan struct{} // held while writing the control stream
	ctrl      *quic.SendStream
	sentHello bool

	serving atomic.Bool
	bufs    sync.Pool // *[]byte scratch buffers for Handler.Chunk

	closeMu  sync.Mutex
	closeErr error // why this side closed the connection, if it did
}

func newConn(qc *quic.Conn, local NodeID, lim Limits) (*Conn, error) {
	cs := qc.ConnectionState().TLS
	remote, err := peerID(cs)
	if err == nil {
		err = checkALPN(cs)
	}
	if err != nil {
		qc.CloseWithError(quic.ApplicationErrorCode(CodeBadNodeID), "bad certificate")
		return nil, err
	}
	return &Conn{qc: qc, lim: lim, local: local, remote: remote, sendSem: make(chan struct{}, 1)}, nil
}

// Dial connects to the node at addr through tr. A non-zero expect is the node
// ID the peer must prove; a mismatch fails with an error matching
// ErrBadNodeID. The Conn answers nothing until Serve is called.
func Dial(ctx context.Context, tr *quic.Transport, addr net.Addr, key ed25519.PrivateKey, expect NodeID, lim Limits) (*Conn, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := ClientTLS(key, expect)
	if err != nil {
		return nil, err
	}
	qc, err := tr.Dial(ctx, addr, tc, lim.quicConfig())
	if err != nil {
		return nil, fmt.Errorf("wire: dial %s: %w", addr, err)
	}
	c, err := newConn(qc, NodeIDOf(key.Public().(ed25519.PublicKey)), lim)
	if err != nil {
		return nil, fmt.Errorf("wire: dial %s: %w", addr, err)
	}
	c.dialed = true
	return c, nil
}

// Listener accepts rpe connections on a quic.Transport. A transport has at
// most one listener, and may dial out while it listens.
type Listener struct {
	ql    *quic.Listener
	local NodeID
	lim   Limits
}

// Listen starts accepting rpe connections on tr, proving the node key key.
func Listen(tr *quic.Transport, key ed25519.PrivateKey, lim Limits) (*Listener, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := ServerTLS(key)
	if err != nil {
		return nil, err
	}
	ql, err := tr.Listen(tc, lim.quicConfig())
	if err != nil {
		return nil, fmt.Errorf("wire: listen: %w", err)
	}
	return &Listener{ql: ql, local: NodeIDOf(key.Public().(ed25519.PublicKey)), lim: lim}, nil
}

// Accept waits for the next connection whose handshake has completed.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	for {
		qc, err := l.ql.Accept(ctx)
		if err != nil {
			return nil, fmt.Errorf("wire: accept: %w", err)
		}
		if c, err := newConn(qc, l.local, l.lim); err == nil {
			return c, nil
		}
	}
}

// Close stops accepting; connections already accepted stay open.
func (l *Listener) Close() error { return l.ql.Close() }

// Addr returns the address the listener's transport reads from.
func (l *Listener) Addr() net.Addr { return l.ql.Addr() }

// LocalID returns this node's ID.
func (c *Conn) LocalID() NodeID { return c.local }

// RemoteID returns the peer's node ID, as proven by its certificate.
func (c *Conn) RemoteID() NodeID { return c.remote }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// Done is closed when the connection has closed, for whatever reason.
func (c *Conn) Done() <-chan struct{} { return c.qc.Context().Done() }

// Err returns nil while the connection is open, and afterwards why it closed:
// an error matching the sentinel of the code either side closed it with
// (ErrClosed for an orderly close), or the QUIC error (idle timeout...).
func (c *Conn) Err() error {
	if c.qc.Context().Err() == nil {
		return nil
	}
	return c.closedErr(context.Cause(c.qc.Context()))
}

// closedErr returns why the connection closed, given the error QUIC reported.
func (c *Conn) closedErr(cause error) error {
	c.closeMu.Lock()
	err := c.closeErr
	c.closeMu.Unlock()
	if err != nil {
		return err
	}
	var ae *quic.ApplicationError
	if errors.As(cause, &ae) && ae.Remote {
		code := CodeProtocol
		if ae.ErrorCode <= 0xffff {
			code = ErrorCode(ae.ErrorCode)
		}
		return fmt.Errorf("wire: peer %s closed the connection: %w", c.remote, &Error{Code: code, Reason: ae.ErrorMessage})
	}
	return fmt.Errorf("wire: connection to %s: %w: %w", c.remote, ErrClosed, cause)
}

// isConnClosed reports whether err from a stream means the whole
// connection closed (QUIC's connection errors all match net.ErrClosed).
func isConnClosed(err error) bool {
	var se *quic.StreamError
	return !errors.As(err, &se) && errors.Is(err, net.ErrClosed)
}

// Close closes the connection with code and reason (truncated to MaxReason
// bytes), aborting requests in flight on both sides.
func (c *Conn) Close(code ErrorCode, reason string) error {
	err := error(ErrClosed)
	if code != CodeNone {
		err = code.Err()
		if err == nil {
			err = fmt.Errorf("%w: %s", ErrInternal, code)
		}
	}
	c.closeWith(code, reason, fmt.Errorf("wire: connection to %s closed here: %s: %w", c.remote, truncate(reason), err))
	return nil
}

// closeWith closes the connection, remembering err as the reason unless an
// earlier reason exists, and returns the reason recorded.
func (c *Conn) closeWith(code ErrorCode, reason string, err error) error {
	c.closeMu.Lock()
	if c.closeErr == nil && c.qc.Context().Err() == nil {
		c.closeErr = err
	}
	c.closeMu.Unlock()
	c.qc.CloseWithError(quic.ApplicationErrorCode(code), truncate(reason))
	return c.Err()
}

// fail disconnects a peer that broke the protocol; err matches the sentinel
// of the code sent to it. It returns the error the caller should report.
func (c *Conn) fail(err error) error {
	err = fmt.Errorf("wire: peer %s: %w", c.remote, err)
	return c.closeWith(codeOf(err), err.Error(), err)
}

func truncate(s string) string {
	if len(s) <= MaxReason {
		return s
	}
	s = s[:MaxReason]
	for len(s) > 0 && s[len(s)-1]&0xc0 == 0x80 { // cut no UTF-8 sequence in half
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xc0 {
		s = s[:len(s)-1]
	}
	return s
}

// peerFault reports whether a local decode or read error is the peer's fault.
func peerFault(err error) bool {
	return errors.Is(err, ErrProtocol) || errors.Is(err, ErrFrameTooLarge) ||
		errors.Is(err, ErrUnknownMessage) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF)
}

// op names an operation for error messages. It is a plain value, formatted
// only when an error is reported, so requests cost no formatting.
type op struct {
	kind  Type
	id    release.ManifestID
	index uint32
	peer  NodeID
	serve bool // serving the peer rather than asking it
}

// String describes the operation.
func (o op) String() string {
	switch {
	case o.serve:
		return fmt.Sprintf("wire: serving peer %s", o.peer)
	case o.kind == TypeGetManifest:
		return fmt.Sprintf("wire: manifest %s from %s", o.id.Short(), o.peer)
	case o.kind == TypeGetChunk:
		return fmt.Sprintf("wire: chunk %d of %s from %s", o.index, o.id.Short(), o.peer)
	}
	return fmt.Sprintf("wire: send %s to %s", o.kind, o.peer)
}

// streamErr turns an error seen on a stream into the error to report:
// the connection's close reason when it closed, ctx's error when the
// request was cancelled, a disconnect when the peer broke the protocol.
func (c *Conn) streamErr(ctx context.Context, what op, err error) error {
	if c.qc.Context().Err() != nil || isConnClosed(err) {
		return fmt.Errorf("%s: %w", what, c.closedErr(err))
	}
	if ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	if peerFault(err) {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: stream ended early", ErrProtocol)
		} else if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return fmt.Errorf("%s: %w", what, c.fail(err))
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		code := CodeProtocol
		if se.ErrorCode <= 0xffff {
			code = ErrorCode(se.ErrorCode)
		}
		return fmt.Errorf("%s: %w", what, &Error{Code: code, Reason: "stream reset"})
	}
	return fmt.Errorf("%s: %w", what, err)
}

// --- sending one-way messages ---

// Send writes a one-way message (*Hello, *Have, *Record or *Peers) on the
// control stream. The first message sent must be a Hello; a Hello's zero
// Version and NodeID are filled in. Messages arrive in the order sent. If ctx
// ends while a message is half written the connection is closed, since the
// control stream cannot be resumed mid-frame.
func (c *Conn) Send(ctx context.Context, m Message) error {
	switch v := m.(type) {
	case *Hello:
		h := *v
		if h.Version == 0 {
			h.Version = ProtocolVersion
		}
		if h.NodeID.IsZero() {
			h.NodeID = c.local
		}
		m = &h
	case *Have, *Record, *Peers, *ReachPeers:
	default:
		return fmt.Errorf("wire: send %T: not a one-way message", m)
	}
	frame, err := EncodeMessage(m)
	if err != nil {
		return err
	}
	if n := len(frame) - HeaderSize; n > c.lim.frameLimit(m.Type()) {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrFrameTooLarge, m.Type(), n, c.lim.frameLimit(m.Type()))
	}
	if _, ok := m.(*Peers); ok && len(m.(*Peers).Addrs) > c.lim.MaxPeers {
		return fmt.Errorf("%w: Peers with %d addresses, limit %d", ErrFrameTooLarge, len(m.(*Peers).Addrs), c.lim.MaxPeers)
	}
	if rp, ok := m.(*ReachPeers); ok && len(rp.Entries) > c.lim.MaxPeers {
		return fmt.Errorf("%w: ReachPeers with %d entries, limit %d", ErrFrameTooLarge, len(rp.Entries), c.lim.MaxPeers)
	}

	select {
	case c.sendSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wire: send %s to %s: %w", m.Type(), c.remote, context.Cause(ctx))
	}
	defer func() { <-c.sendSem }()

	what := op{kind: m.Type(), peer: c.remote}
	if c.ctrl == nil {
		if m.Type() != TypeHello {
			return fmt.Errorf("%s: %w: the first message must be a Hello", what, ErrProtocol)
		}
		s, err := c.qc.OpenUniStreamSync(ctx)
		if err != nil {
			return c.streamErr(ctx, what, err)
		}
		c.ctrl = s
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.ctrl.SetWriteDeadline(time.Now()) // unblocks the Write below
		close(fired)
	})
	n, err := c.ctrl.Write(frame)
	if !stop() {
		<-fired
		c.ctrl.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		if n > 0 && c.qc.Context().Err() == nil {
			cause := err
			if ctx.Err() != nil {
				cause = context.Cause(ctx)
			}
			return fmt.Errorf("%s: %w", what, c.closeWith(CodeInternal, "control stream write aborted",
				fmt.Errorf("wire: control stream to %s cut mid-frame: %w: %w", c.remote, ErrInternal, cause)))
		}
		return c.streamErr(ctx, what, err)
	}
	return nil
}

// --- requests ---

// request opens a stream, sends m on it and half-closes it. The returned
// stop must be called when the answer has been read.
func (c *Conn) request(ctx context.Context, what op, m Message) (*quic.Stream, func() bool, error) {
	frame, err := EncodeMessage(m)
	if err != nil {
		return nil, nil, err
	}
	s, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, c.streamErr(ctx, what, err)
	}
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(quic.StreamErrorCode(CodeCancelled))
		s.CancelWrite(quic.StreamErrorCode(CodeCancelled))
	})
	if _, err := s.Write(frame); err != nil {
		stop()
		return nil, nil, c.streamErr(ctx, what, err)
	}
	s.Close()
	return s, stop, nil
}

// answerLimit allows only answers on a request stream.
func answerLimit(answer Type, max int) func(Type) int {
	return func(t Type) int {
		switch t {
		case answer:
			return max
		case TypeError:
			return typeCap(TypeError)
		}
		return -1
	}
}

// readError reads the payload of an Error answer.
func (c *Conn) readError(ctx context.Context, what op, s *quic.Stream, n int) error {
	var buf [errorMaxSize]byte
	if _, err := io.ReadFull(s, buf[:n]); err != nil {
		return c.streamErr(ctx, what, noEOF(err))
	}
	m, err := DecodeMessage(TypeError, buf[:n])
	if err != nil {
		return fmt.Errorf("%s: %w", what, c.fail(err))
	}
	e := m.(*Error)
	if e.Code == CodeNone {
		e.Code = CodeProtocol
	}
	return fmt.Errorf("%s: %w", what, e)
}

// expectEnd checks that the peer sent nothing after its answer.
func (c *Conn) expectEnd(ctx context.Context, what op, s *quic.Stream) error {
	var one [1]byte
	n, err := s.Read(one[:])
	if n > 0 {
		return fmt.Errorf("%s: %w", what, c.fail(fmt.Errorf("%w: data after the answer", ErrProtocol)))
	}
	if err != nil && err != io.EOF {
		return c.streamErr(ctx, what, err)
	}
	return nil
}

// GetManifest asks the peer for the manifest with the given ID. The answer
// may be at most Limits.MaxManifest bytes; a longer one disconnects the peer.
// A peer that does not hold it gives an error matching ErrNotFound.
func (c *Conn) GetManifest(ctx context.Context, id release.ManifestID) ([]byte, error) {
	what := op{kind: TypeGetManifest, id: id, peer: c.remote}
	s, stop, err := c.request(ctx, what, &GetManifest{ID: id})
	if err != nil {
		return nil, err
	}
	defer stop()
	t, n, err := readHeader(s, answerLimit(TypeManifest, c.lim.MaxManifest))
	if err != nil {
		return nil, c.streamErr(ctx, what, noEOF(err))
	}
	if t == TypeError {
		return nil, c.readError(ctx, what, s, n)
	}
	buf, err := readGrowing(s, n)
	if err != nil {
		return nil, c.streamErr(ctx, what, noEOF(err))
	}
	if err := c.expectEnd(ctx, what, s); err != nil {
		return nil, err
	}
	return buf, nil
}

// readGrowing reads exactly n bytes from r into a buffer that grows with
// the bytes received, so a peer that announces a large answer and sends
// little makes the reader allocate little.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	const first = 64 << 10
	buf := make([]byte, 0, min(n, first))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), n-len(buf)))
		}
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			return nil, err
		}
	}
	return buf, nil
}

// GetChunk asks the peer for chunk index of a release and reads it straight
// into dst, which must have exactly the chunk's length (at most
// Limits.MaxChunk). An answer of any other length disconnects the peer
// (ErrFrameTooLarge if longer, ErrProtocol if shorter); no other buffer is
// allocated. On error dst may hold part of an answer.
func (c *Conn) GetChunk(ctx context.Context, id release.ManifestID, index uint32, dst []byte) error {
	_, err := c.getChunk(ctx, id, index, len(dst), func(int) []byte { return dst })
	return err
}

// FetchChunk is GetChunk into a new buffer of n bytes, allocated only once
// the peer has answered with the chunk: a refusal (busy, not found) costs
// no chunk-sized allocation. This matters in a swarm, where most requests
// to a busy peer are refused.
func (c *Conn) FetchChunk(ctx context.Context, id release.ManifestID, index uint32, n int) ([]byte, error) {
	return c.getChunk(ctx, id, index, n, func(n int) []byte { return make([]byte, n) })
}

func (c *Conn) getChunk(ctx context.Context, id release.ManifestID, index uint32, size int, alloc func(int) []byte) ([]byte, error) {
	what := op{kind: TypeGetChunk, id: id, index: index, peer: c.remote}
	if size <= 0 || size > c.lim.MaxChunk {
		return nil, fmt.Errorf("%s: %w: buffer of %d bytes, limit %d", what, ErrFrameTooLarge, size, c.lim.MaxChunk)
	}
	s, stop, err := c.request(ctx, what, &GetChunk{ID: id, Index: index})
	if err != nil {
		return nil, err
	}
	defer stop()
	t, n, err := readHeader(s, answerLimit(TypeChunk, size))
	if err != nil {
		return nil, c.streamErr(ctx, what, noEOF(err))
	}
	if t == TypeError {
		return nil, c.readError(ctx, what, s, n)
	}
	if n != size {
		return nil, fmt.Errorf("%s: %w", what, c.fail(fmt.Errorf("%w: chunk of %d bytes, want %d", ErrProtocol, n, size)))
	}
	dst := alloc(n)
	if _, err := io.ReadFull(s, dst); err != nil {
		return nil, c.streamErr(ctx, what, noEOF(err))
	}
	if err := c.expectEnd(ctx, what, s); err != nil {
		return nil, err
	}
	return dst, nil
}

// --- serving ---

// Serve answers the peer's requests, each on its own goroutine, and passes
// its one-way messages to h.Notify, until the connection closes; ending ctx
// closes it. It returns nil after an orderly close (CodeNone from either
// side), otherwise why the connection ended. A peer that breaks the
// protocol is disconnected with the matching code. Call Serve once.
func (c *Conn) Serve(ctx context.Context, h Handler) error {
	if !c.serving.CompareAndSwap(false, true) {
		return errors.New("wire: Serve called twice")
	}
	stop := context.AfterFunc(ctx, func() { c.Close(CodeNone, "shutting down") })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { c.serveControl(h) })
	for {
		s, err := c.qc.AcceptStream(context.Background())
		if err != nil {
			break
		}
		wg.Go(func() { c.serveRequest(s, h) })
	}
	wg.Wait()
	// Streams fail a moment before the connection's context ends.
	<-c.qc.Context().Done()
	var ae *quic.ApplicationError
	if errors.As(context.Cause(c.qc.Context()), &ae) && ae.ErrorCode == quic.ApplicationErrorCode(CodeNone) {
		return nil // closed by Close(CodeNone) on either side
	}
	return c.Err()
}

// serveControl reads the peer's control stream. The whole Hello must arrive
// within HelloTimeout.
func (c *Conn) serveControl(h Handler) {
	deadline := time.Now().Add(c.lim.HelloTimeout)
	noHello := func() {
		c.fail(fmt.Errorf("%w: no Hello within %v", ErrProtocol, c.lim.HelloTimeout))
	}
	actx, cancel := context.WithDeadline(context.Background(), deadline)
	s, err := c.qc.AcceptUniStream(actx)
	cancel()
	if err != nil {
		if c.qc.Context().Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			noHello()
		}
		return
	}
	s.SetReadDeadline(deadline)
	first := true
	for {
		t, p, err := readFrame(s, c.controlLimit)
		if err != nil {
			var se *quic.StreamError
			switch {
			case c.qc.Context().Err() != nil:
			case first && errors.Is(err, os.ErrDeadlineExceeded):
				noHello()
				return
			case errors.As(err, &se):
				err = fmt.Errorf("%w: control stream reset", ErrProtocol)
			}
			c.streamErr(nil, op{serve: true, peer: c.remote}, err)
			return
		}
		m, err := DecodeMessage(t, p)
		if err != nil {
			c.fail(err)
			return
		}
		switch m := m.(type) {
		case *Hello:
			if m.Version != ProtocolVersion {
				c.fail(fmt.Errorf("%w: Hello version %d, want %d", ErrVersion, m.Version, ProtocolVersion))
				return
			}
			if m.NodeID != c.remote {
				c.fail(fmt.Errorf("%w: Hello says %s, certificate says %s", ErrBadNodeID, m.NodeID, c.remote))
				return
			}
		case *Peers:
			if len(m.Addrs) > c.lim.MaxPeers {
				c.fail(fmt.Errorf("%w: Peers with %d addresses, limit %d", ErrFrameTooLarge, len(m.Addrs), c.lim.MaxPeers))
				return
			}
		case *ReachPeers:
			if len(m.Entries) > c.lim.MaxPeers {
				c.fail(fmt.Errorf("%w: ReachPeers with %d entries, limit %d", ErrFrameTooLarge, len(m.Entries), c.lim.MaxPeers))
				return
			}
		}
		if first && t != TypeHello {
			c.fail(fmt.Errorf("%w: first message is %s, want Hello", ErrProtocol, t))
			return
		}
		if first {
			s.SetReadDeadline(time.Time{})
		}
		first = false
		h.Notify(c.remote, m)
	}
}

// controlLimit allows only one-way messages on the control stream.
func (c *Conn) controlLimit(t Type) int {
	switch t {
	case TypeHello, TypeHave, TypeRecord, TypePeers, TypeReachPeers:
		return c.lim.frameLimit(t)
	}
	return -1
}

// requestLimit allows only requests on a request stream.
func (c *Conn) requestLimit(t Type) int {
	switch t {
	case TypeGetManifest, TypeGetChunk:
		return typeCap(t)
	}
	return -1
}

// serveRequest reads one request from s and answers it.
func (c *Conn) serveRequest(s *quic.Stream, h Handler) {
	s.SetReadDeadline(time.Now().Add(c.lim.RequestTimeout))
	t, p, err := readFrame(s, c.requestLimit)
	if err == nil {
		var one [1]byte
		n, rerr := s.Read(one[:])
		switch {
		case n > 0:
			err = fmt.Errorf("%w: data after the request", ErrProtocol)
		case rerr != io.EOF:
			err = rerr
		}
	}
	if err != nil {
		if c.qc.Context().Err() != nil {
			return
		}
		if peerFault(err) {
			c.streamErr(nil, op{serve: true, peer: c.remote}, err)
			return
		}
		// A timeout or a reset: drop this request, keep the connection.
		s.CancelRead(quic.StreamErrorCode(CodeCancelled))
		s.CancelWrite(quic.StreamErrorCode(CodeCancelled))
		return
	}
	m, err := DecodeMessage(t, p)
	if err != nil {
		c.fail(err)
		return
	}
	switch m := m.(type) {
	case *GetManifest:
		data, err := h.Manifest(m.ID)
		if err == nil && len(data) > c.lim.MaxManifest {
			err = fmt.Errorf("%w: manifest of %d bytes over the limit", ErrInternal, len(data))
		}
		if err != nil {
			c.answerError(s, err)
			return
		}
		c.answer(s, TypeManifest, data)
	case *GetChunk:
		bp, _ := c.bufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		data, err := h.Chunk(m.ID, m.Index, (*bp)[:0])
		var sent error // the answer's outcome, for ChunkSent
		if cs, ok := h.(ChunkSentHandler); ok && err == nil {
			defer func() { cs.ChunkSent(m.ID, m.Index, sent) }()
		}
		if err == nil && len(data) > c.lim.MaxChunk {
			err = fmt.Errorf("%w: chunk of %d bytes over the limit", ErrInternal, len(data))
			sent = err
		}
		if errors.Is(err, ErrBadIndex) {
			c.fail(fmt.Errorf("chunk %d of %s: %w", m.Index, m.ID.Short(), err))
		} else if err != nil {
			c.answerError(s, err)
		} else if err = c.answer(s, TypeChunk, data); err != nil {
			sent = fmt.Errorf("send chunk %d of %s to peer %s: %w", m.Index, m.ID.Short(), c.remote, err)
		}
		if cap(data) > cap(*bp) && cap(data) <= c.lim.MaxChunk {
			*bp = data[:0]
		}
		c.bufs.Put(bp)
	}
}

// answer writes a frame of type t carrying data, and ends the stream. It
// returns why the answer was not written in full, if it was not.
func (c *Conn) answer(s *quic.Stream, t Type, data []byte) error {
	// An answer the peer does not take in time is abandoned, so that a
	// stuck stream cannot hold the handler's resources (its upload slot)
	// for the connection's lifetime.
	// It is written in pieces, each with its own deadline: a peer that takes
	// it slower than MinAnswerRate (plus SlowAnswerGrace per piece) loses it
	// within seconds, so stalled answers cannot hold the slots for long.
	final := time.Now().Add(c.lim.AnswerTimeout)
	write := func(b []byte) error {
		d := time.Now().Add(c.lim.SlowAnswerGrace + time.Duration(int64(len(b))*int64(time.Second)/int64(c.lim.MinAnswerRate)))
		if d.After(final) {
			d = final
		}
		s.SetWriteDeadline(d)
		if _, err := s.Write(b); err != nil {
			s.CancelWrite(quic.StreamErrorCode(CodeCancelled))
			return err
		}
		return nil
	}
	var h [HeaderSize]byte
	if err := write(AppendHeader(h[:0], t, len(data))); err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), answerPiece)
		if err := write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return s.Close()
}

// answerPiece is the size of the pieces an answer is written in, each
// under its own MinAnswerRate deadline.
const answerPiece = 32 << 10

// answerError writes an Error answer for a handler's error. Only the code
// and a short reason go to the peer, never the local error text.
func (c *Conn) answerError(s *quic.Stream, err error) {
	code := codeOf(err)
	switch code {
	case CodeNotFound, CodeBusy:
	default:
		code = CodeInternal
	}
	frame, _ := EncodeMessage(&Error{Code: code, Reason: code.String()})
	// No deadline needed: quic-go queues a write this short and returns at
	// once, whatever the peer's flow control; a peer that never takes it
	// holds only its own stream slot.
	if _, err := s.Write(frame); err == nil {
		s.Close()
	}
}
