package wire

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/release"
)

func TestManifestAndChunks(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	hb := newTestHandler()
	id := mid(1)
	hb.manifests[id] = []byte("signed manifest bytes")
	hb.chunks[id] = [][]byte{pattern(1000, 1), pattern(1000, 2), pattern(17, 3)}
	ac, bc := connect(t, a, b, Limits{}, newTestHandler(), hb)
	ctx := testCtx(t)

	if ac.RemoteID() != b.id || bc.RemoteID() != a.id {
		t.Fatalf("remote IDs %s/%s, want %s/%s", ac.RemoteID(), bc.RemoteID(), b.id, a.id)
	}
	m, err := ac.GetManifest(ctx, id)
	if err != nil || !bytes.Equal(m, hb.manifests[id]) {
		t.Fatalf("GetManifest = %q, %v", m, err)
	}
	for i, want := range hb.chunks[id] {
		dst := make([]byte, len(want))
		if err := ac.GetChunk(ctx, id, uint32(i), dst); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if !bytes.Equal(dst, want) {
			t.Fatalf("chunk %d differs", i)
		}
	}

	// Not found is an answer, not a disconnect.
	if _, err := ac.GetManifest(ctx, mid(9)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown manifest: %v, want ErrNotFound", err)
	}
	if err := ac.GetChunk(ctx, mid(9), 0, make([]byte, 10)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown chunk: %v, want ErrNotFound", err)
	}
	// The other direction works on the same connection.
	ha := ac.Conn
	_ = ha
	if _, err := bc.GetManifest(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reverse request: %v, want ErrNotFound", err)
	}
	if err := ac.GetChunk(ctx, id, 2, make([]byte, 17)); err != nil {
		t.Fatalf("connection unusable after errors: %v", err)
	}
	// FetchChunk: the same answers, into a buffer of its own.
	if got, err := ac.FetchChunk(ctx, id, 1, 1000); err != nil || !bytes.Equal(got, hb.chunks[id][1]) {
		t.Fatalf("FetchChunk: %d bytes, %v", len(got), err)
	}
	if got, err := ac.FetchChunk(ctx, mid(9), 0, 10); !errors.Is(err, ErrNotFound) || got != nil {
		t.Fatalf("FetchChunk of an unknown chunk: %d bytes, %v; want nil, ErrNotFound", len(got), err)
	}

	// An orderly close ends both Serve calls with nil.
	ac.Close(CodeNone, "bye")
	if err := ac.result(t); err != nil {
		t.Fatalf("local Serve: %v", err)
	}
	if err := bc.result(t); err != nil {
		t.Fatalf("remote Serve: %v", err)
	}
	if err := ac.GetChunk(ctx, id, 0, make([]byte, 1000)); !errors.Is(err, ErrClosed) {
		t.Fatalf("request on closed conn: %v, want ErrClosed", err)
	}
}

func TestManyConcurrentChunks(t *testing.T) {
	lim := Limits{MaxInflight: 4} // far fewer than the requests, so requesters wait
	a, b := newNode(t, lim), newNode(t, lim)
	hb := newTestHandler()
	id := mid(2)
	const n = 64
	for i := range n {
		hb.chunks[id] = append(hb.chunks[id], pattern(64<<10, byte(i)))
	}
	ac, _ := connect(t, a, b, lim, newTestHandler(), hb)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			dst := make([]byte, 64<<10)
			if err := ac.GetChunk(ctx, id, uint32(i), dst); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(dst, hb.chunks[id][i]) {
				errs <- errors.New("chunk differs")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestOneWayMessages(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	hb := newTestHandler()
	ac, _ := connect(t, a, b, Limits{}, newTestHandler(), hb)
	ctx := testCtx(t)

	if err := ac.Send(ctx, &Have{ID: mid(1), Index: 3}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Have before Hello: %v, want ErrProtocol", err)
	}
	msgs := []Message{
		&Hello{Releases: []HaveSet{{ID: mid(1), Bitfield: []byte{0xf0}}, {ID: mid(2), Complete: true}}},
		&Have{ID: mid(1), Index: 4},
		&Record{Relay: []byte("relay form")},
		&Peers{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.9:4000"), netip.MustParseAddrPort("[::1]:5")}},
		&Have{ID: mid(1), Index: 5},
	}
	for _, m := range msgs {
		if err := ac.Send(ctx, m); err != nil {
			t.Fatalf("send %s: %v", m.Type(), err)
		}
	}
	got := hb.waitNotified(t, len(msgs))
	h, ok := got[0].(*Hello)
	if !ok || h.Version != ProtocolVersion || h.NodeID != a.id || len(h.Releases) != 2 || !h.Releases[1].Complete {
		t.Fatalf("first message %#v", got[0])
	}
	for i := 1; i < len(msgs); i++ {
		want, _ := EncodeMessage(msgs[i])
		have, _ := EncodeMessage(got[i])
		if !bytes.Equal(want, have) {
			t.Fatalf("message %d: got %#v, want %#v", i, got[i], msgs[i])
		}
	}
	if hb.from[0] != a.id {
		t.Fatalf("from %s, want %s", hb.from[0], a.id)
	}
	if err := ac.Send(ctx, &GetChunk{}); err == nil {
		t.Fatal("Send accepted a request")
	}
	if err := ac.Send(ctx, &Peers{Addrs: make([]netip.AddrPort, DefaultMaxPeers+1)}); err == nil {
		t.Fatal("Send accepted too many peers")
	}
}

func TestCancelRequest(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	hb := newTestHandler()
	unblock := make(chan struct{})
	entered := make(chan struct{}, 1)
	hb.chunkFunc = func(id release.ManifestID, index uint32, buf []byte) ([]byte, error) {
		if index == 0 {
			entered <- struct{}{}
			<-unblock
		}
		return append(buf, 1, 2, 3), nil
	}
	ac, _ := connect(t, a, b, Limits{}, newTestHandler(), hb)
	defer close(unblock)

	ctx, cancel := context.WithCancel(testCtx(t))
	res := make(chan error, 1)
	go func() { res <- ac.GetChunk(ctx, mid(1), 0, make([]byte, 3)) }()
	<-entered
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled GetChunk: %v", err)
	}
	dst := make([]byte, 3)
	if err := ac.GetChunk(testCtx(t), mid(1), 1, dst); err != nil || !bytes.Equal(dst, []byte{1, 2, 3}) {
		t.Fatalf("after a cancel: %v %v", dst, err)
	}
}

func TestServeContextCloses(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	ctx := testCtx(t)
	acc := make(chan *Conn, 1)
	go func() {
		c, _ := b.ln.Accept(ctx)
		acc <- c
	}()
	c, err := Dial(ctx, a.tr, b.ln.Addr(), a.key, NodeID{}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	bc := serve(t, <-acc, newTestHandler())
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Serve(sctx, newTestHandler()) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after ctx cancel: %v", err)
	}
	if err := bc.result(t); err != nil {
		t.Fatalf("peer Serve: %v", err)
	}
	if err := c.Serve(ctx, newTestHandler()); err == nil {
		t.Fatal("second Serve accepted")
	}
}

// plainConn hides every method of *net.UDPConn but those of net.PacketConn,
// as an in-memory network's conn would.
type plainConn struct{ net.PacketConn }

// SetReadBuffer and SetWriteBuffer silence quic-go's buffer-size warning.
func (plainConn) SetReadBuffer(int) error  { return nil }
func (plainConn) SetWriteBuffer(int) error { return nil }

// TestOverPlainPacketConn: wire needs only a quic.Transport over some
// net.PacketConn, not a *net.UDPConn.
func TestOverPlainPacketConn(t *testing.T) {
	plain := func() *quic.Transport {
		uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: plainConn{uc}}
		t.Cleanup(func() { tr.Close(); uc.Close() })
		return tr
	}
	a := &node{key: newKey(t), tr: plain()}
	b := &node{key: newKey(t), tr: plain()}
	a.id, b.id = idOf(a.key), idOf(b.key)
	ln, err := Listen(b.tr, b.key, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b.ln = ln
	hb := newTestHandler()
	hb.chunks[mid(1)] = [][]byte{pattern(300<<10, 4)}
	ac, _ := connect(t, a, b, Limits{}, newTestHandler(), hb)
	dst := make([]byte, 300<<10)
	if err := ac.GetChunk(testCtx(t), mid(1), 0, dst); err != nil || !bytes.Equal(dst, hb.chunks[mid(1)][0]) {
		t.Fatalf("GetChunk over a plain PacketConn: %v", err)
	}
}

func TestLimitsValidated(t *testing.T) {
	tr := newTransport(t)
	for _, lim := range []Limits{{MaxChunk: -1}, {MaxFrame: 2 << 30}, {IdleTimeout: -time.Second}} {
		if _, err := Listen(tr, newKey(t), lim); err == nil {
			t.Errorf("Listen accepted %+v", lim)
		}
		if _, err := Dial(testCtx(t), tr, tr.Conn.LocalAddr(), newKey(t), NodeID{}, lim); err == nil {
			t.Errorf("Dial accepted %+v", lim)
		}
	}
	if _, err := Listen(tr, make([]byte, 10), Limits{}); err == nil {
		t.Error("Listen accepted a short key")
	}
	l, err := Limits{}.withDefaults()
	if err != nil || l.MaxChunk != DefaultMaxChunk || l.MaxInflight != DefaultMaxInflight || l.KeepAlive != DefaultKeepAlive {
		t.Errorf("defaults: %+v %v", l, err)
	}
}

// TestIdleTimeout: a peer that vanishes without closing ends Serve with an
// error (not an orderly nil) once the idle timeout passes.
func TestIdleTimeout(t *testing.T) {
	lim := Limits{IdleTimeout: 300 * time.Millisecond}
	a, b := newNode(t, lim), newNode(t, lim)
	ac, _ := connect(t, a, b, lim, newTestHandler(), newTestHandler())
	b.tr.Conn.Close() // b goes silent: no CONNECTION_CLOSE reaches a
	err := ac.result(t)
	if err == nil || !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after the peer vanished = %v, want an error matching ErrClosed", err)
	}
	var ite *quic.IdleTimeoutError
	if !errors.As(err, &ite) {
		t.Fatalf("Serve = %v, want an idle timeout", err)
	}
}

// blockingHandler blocks in Notify until unblocked.
type blockingHandler struct {
	*testHandler
	unblock chan struct{}
}

func (h blockingHandler) Notify(from NodeID, m Message) { <-h.unblock }

// TestSendHonoursContext: a Send stuck on flow control (the peer does not
// read) returns when its context ends, and a frame cut in half closes the
// connection rather than corrupting the control stream.
func TestSendHonoursContext(t *testing.T) {
	lim := Limits{StreamWindow: 128 << 10, ConnWindow: 256 << 10}
	a, b := newNode(t, lim), newNode(t, lim)
	hb := blockingHandler{newTestHandler(), make(chan struct{})}
	defer close(hb.unblock)
	ac, _ := connect(t, a, b, lim, newTestHandler(), hb)
	big := &Hello{Releases: []HaveSet{{ID: mid(1), Bitfield: make([]byte, 60<<10)}}}
	var err error
	for i := 0; i < 100 && err == nil; i++ { // 100 × 60 KiB is far past the windows
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err = ac.Send(ctx, big)
		cancel()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send past the flow-control window = %v, want a deadline error", err)
	}
	select {
	case <-ac.Done():
		if e := ac.Err(); !errors.Is(e, ErrInternal) {
			t.Fatalf("closed with %v, want ErrInternal for a frame cut in half", e)
		}
	default:
		// Nothing was written: the stream is intact and usable.
	}
}

// sentHandler records every ChunkSent call.
type sentHandler struct {
	*testHandler
	sent chan sentCall
}

type sentCall struct {
	index uint32
	err   error
}

func (h sentHandler) ChunkSent(id release.ManifestID, index uint32, err error) {
	h.sent <- sentCall{index, err}
}

// TestChunkSentReportsOutcome: ChunkSent says whether the answer went out in
// full: nil for an answer written, an error for one cut off by the
// connection closing and for a chunk over MaxChunk, so a handler can count
// what reached the peer.
func TestChunkSentReportsOutcome(t *testing.T) {
	lim := Limits{MaxChunk: 1 << 10}
	a, b := newNode(t, lim), newNode(t, lim)
	id := mid(3)
	cut := make(chan [2]*Conn, 1) // both ends, for chunk 1 to close
	hb := sentHandler{newTestHandler(), make(chan sentCall, 4)}
	hb.chunkFunc = func(_ release.ManifestID, index uint32, buf []byte) ([]byte, error) {
		switch index {
		case 1: // the requester goes away before the answer is written
			ends := <-cut
			ends[0].Close(CodeNone, "gone")
			waitDone(t, ends[1])
		case 2:
			return append(buf, make([]byte, 2<<10)...), nil // over MaxChunk
		}
		return append(buf, pattern(100, byte(index))...), nil
	}
	ac, bc := connect(t, a, b, lim, newTestHandler(), hb)
	ctx := testCtx(t)
	want := func(index uint32, ok bool) {
		t.Helper()
		select {
		case c := <-hb.sent:
			if c.index != index || (c.err == nil) != ok {
				t.Fatalf("ChunkSent(%d, %v), want chunk %d sent %v", c.index, c.err, index, ok)
			}
		case <-ctx.Done():
			t.Fatalf("no ChunkSent for chunk %d", index)
		}
	}
	if err := ac.GetChunk(ctx, id, 0, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	want(0, true)
	if err := ac.GetChunk(ctx, id, 2, make([]byte, 100)); err == nil {
		t.Fatal("chunk over MaxChunk was answered")
	}
	want(2, false)
	cut <- [2]*Conn{ac.Conn, bc.Conn}
	if err := ac.GetChunk(ctx, id, 1, make([]byte, 100)); err == nil {
		t.Fatal("chunk 1 arrived on a closed connection")
	}
	want(1, false)
}
