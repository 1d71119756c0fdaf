package wire

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/release"
)

// rawServer connects a wire client to a plain quic-go listener carrying a
// valid node certificate, so a test can answer the client's requests with
// any bytes. It returns the client, served, and the raw server's side.
func rawServer(t *testing.T, lim Limits) (*served, *quic.Conn) {
	t.Helper()
	full, err := lim.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	st, err := ServerTLS(key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := newTransport(t).Listen(st, full.quicConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	a := &node{key: newKey(t), tr: newTransport(t)}
	ctx := testCtx(t)
	c, err := Dial(ctx, a.tr, ln.Addr(), a.key, idOf(key), lim)
	if err != nil {
		t.Fatal(err)
	}
	qc, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return serve(t, c, newTestHandler()), qc
}

// answerOnce takes the next request on the raw server's side qc, reads it,
// and leaves the answer to answer, on its own goroutine.
func answerOnce(t *testing.T, qc *quic.Conn, answer func(s *quic.Stream)) {
	ctx := testCtx(t)
	go func() {
		s, err := qc.AcceptStream(ctx)
		if err != nil {
			return
		}
		if _, _, err := ReadFrame(s, getChunkSize); err != nil {
			return
		}
		answer(s)
	}()
}

// TestSilentPeerDisconnected: a peer that completes the handshake and then
// says nothing, or only part of its Hello, is disconnected once
// HelloTimeout passes; keep-alives would otherwise hold it open for ever.
func TestSilentPeerDisconnected(t *testing.T) {
	cases := []struct {
		name string
		send func(t *testing.T, qc *quic.Conn, self NodeID)
	}{
		{"nothing", func(*testing.T, *quic.Conn, NodeID) {}},
		{"control stream without a frame", func(t *testing.T, qc *quic.Conn, _ NodeID) {
			s, _ := qc.OpenUniStream()
			s.Write(nil)
		}},
		{"half a Hello", func(t *testing.T, qc *quic.Conn, self NodeID) {
			s, _ := qc.OpenUniStream()
			f := helloFrame(t, self, ProtocolVersion)
			s.Write(f[:len(f)/2])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newNode(t, Limits{HelloTimeout: 200 * time.Millisecond})
			qc, srv := rawPeer(t, b, newTestHandler())
			tc.send(t, qc, srv.RemoteID())
			ae := waitClosed(t, qc)
			if !ae.Remote || ErrorCode(ae.ErrorCode) != CodeProtocol {
				t.Fatalf("closed with %v, want code %s", ae, CodeProtocol)
			}
			if err := srv.result(t); !errors.Is(err, ErrProtocol) {
				t.Fatalf("Serve = %v, want ErrProtocol", err)
			}
		})
	}
}

// TestHelloInTimeKeepsConnection: the Hello deadline ends with the Hello; a
// peer quiet after it stays connected.
func TestHelloInTimeKeepsConnection(t *testing.T) {
	lim := Limits{HelloTimeout: 100 * time.Millisecond, RequestTimeout: 400 * time.Millisecond}
	b := newNode(t, lim)
	h := newTestHandler()
	qc, srv := rawPeer(t, b, h)
	ctrl, err := qc.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write(helloFrame(t, srv.RemoteID(), ProtocolVersion))
	h.waitNotified(t, 1)
	// A stalled request is reset after RequestTimeout, well past the
	// Hello deadline: an event to wait for instead of a sleep.
	s, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	s.Write(header(TypeGetChunk, 36)[:2])
	s.SetReadDeadline(time.Now().Add(waitFor))
	var se *quic.StreamError
	if _, err := s.Read(make([]byte, 1)); !errors.As(err, &se) {
		t.Fatalf("stalled request: %v, want a stream reset", err)
	}
	if err := srv.Err(); err != nil {
		t.Fatalf("connection closed after a timely Hello: %v", err)
	}
}

// TestUnreadAnswerAbandoned: a peer that asks for a chunk and then never
// reads (its receive window stays shut) holds the answering goroutine, its
// buffer and its stream slot only until AnswerTimeout.
func TestUnreadAnswerAbandoned(t *testing.T) {
	lim := Limits{AnswerTimeout: 200 * time.Millisecond, MaxInflight: 1}
	b := newNode(t, lim)
	h := newTestHandler()
	h.chunks[mid(1)] = [][]byte{pattern(64<<10, 1)}
	qc, _ := rawPeerConfig(t, b, h, &quic.Config{InitialStreamReceiveWindow: 1, MaxStreamReceiveWindow: 1})
	s, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := EncodeMessage(&GetChunk{ID: mid(1)})
	s.Write(f)
	s.Close()
	// MaxInflight is 1: a second stream opens only once the server has
	// given up on the first answer.
	if _, err := qc.OpenStreamSync(testCtx(t)); err != nil {
		t.Fatalf("stream slot never freed: %v", err)
	}
	if err := qc.Context().Err(); err != nil {
		t.Fatalf("connection closed: %v", err)
	}
}

// TestGetManifestAllocatesWhatArrives: a peer that announces a manifest of
// the largest allowed size and sends nothing makes the requester allocate
// little, not the announced size.
func TestGetManifestAllocatesWhatArrives(t *testing.T) {
	const announced = 64 << 20
	c, qc := rawServer(t, Limits{MaxManifest: announced})
	answerOnce(t, qc, func(s *quic.Stream) {
		s.Write(header(TypeManifest, announced))
		s.Write(make([]byte, 1000))
		s.Close()
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := c.GetManifest(testCtx(t), mid(1))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("GetManifest of a cut manifest = %v, want ErrProtocol", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > announced/8 {
		t.Fatalf("GetManifest allocated %d MiB for 1000 bytes received", got>>20)
	}
}

// TestAnswerCutShort: a chunk answer that stops halfway, by the stream's
// end, a reset, the connection's close or silence, fails GetChunk with an
// error that says which, and only a protocol violation disconnects.
func TestAnswerCutShort(t *testing.T) {
	const size = 1000
	cases := []struct {
		name   string
		end    func(s *quic.Stream, qc *quic.Conn, cancel context.CancelFunc)
		want   error
		closed bool
	}{
		{"stream ends", func(s *quic.Stream, _ *quic.Conn, _ context.CancelFunc) { s.Close() }, ErrProtocol, true},
		{"stream reset", func(s *quic.Stream, _ *quic.Conn, _ context.CancelFunc) {
			s.CancelWrite(quic.StreamErrorCode(CodeBusy))
		}, ErrBusy, false},
		{"connection closed", func(_ *quic.Stream, qc *quic.Conn, _ context.CancelFunc) {
			qc.CloseWithError(quic.ApplicationErrorCode(CodeInternal), "gone")
		}, ErrInternal, true},
		{"silence", func(_ *quic.Stream, _ *quic.Conn, cancel context.CancelFunc) { cancel() }, context.Canceled, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, qc := rawServer(t, Limits{})
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			answerOnce(t, qc, func(s *quic.Stream) {
				s.Write(header(TypeChunk, size))
				s.Write(pattern(size/2, 1))
				tc.end(s, qc, cancel)
			})
			err := c.GetChunk(ctx, mid(1), 0, make([]byte, size))
			if !errors.Is(err, tc.want) {
				t.Fatalf("GetChunk = %v, want %v", err, tc.want)
			}
			if tc.closed {
				waitDone(t, c.Conn)
			} else if err := c.Err(); err != nil {
				t.Fatalf("connection closed: %v", err)
			}
		})
	}
}

// TestVanishedPeerLeavesNoGoroutines: a peer that opens every stream it
// may, sends a partial frame on each and on its control stream, has a
// request of ours pending, and then vanishes without a word, leaves no
// goroutine behind once the idle timeout has passed.
func TestVanishedPeerLeavesNoGoroutines(t *testing.T) {
	lim := Limits{IdleTimeout: 500 * time.Millisecond, MaxInflight: 4}
	b := newNode(t, lim)
	base := runtime.NumGoroutine()

	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: uc}
	ctx := testCtx(t)
	acc := make(chan *Conn, 1)
	go func() {
		c, _ := b.ln.Accept(ctx)
		acc <- c
	}()
	tc, _ := ClientTLS(newKey(t), b.id)
	qc, err := tr.Dial(ctx, b.ln.Addr(), tc, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c := <-acc
	if c == nil {
		t.FailNow()
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(context.Background(), newTestHandler()) }()
	pending := make(chan error, 1)
	go func() { pending <- c.GetChunk(context.Background(), mid(1), 0, make([]byte, 10)) }()

	ctrl, _ := qc.OpenUniStream()
	ctrl.Write(header(TypeHello, 100)[:3])
	for range lim.MaxInflight {
		s, err := qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Write(header(TypeGetChunk, 36)[:2])
	}
	// Vanish: the socket goes first, so not even a CONNECTION_CLOSE leaves.
	uc.Close()
	tr.Close()

	for _, ch := range []chan error{pending, done} {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("after the peer vanished: %v, want ErrClosed", err)
			}
		case <-time.After(waitFor):
			t.Fatal("a request or Serve outlived the vanished peer")
		}
	}
	// Goroutines end a moment after the errors are reported: poll the
	// count, with a deadline.
	deadline := time.After(waitFor)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := runtime.NumGoroutine(); n > base; n = runtime.NumGoroutine() {
		select {
		case <-tick.C:
		case <-deadline:
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the peer came:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
	}
}

// TestHelloOfLargestReleaseFits: a node downloading the largest release
// the default limits allow (8 GiB in 16 KiB chunks: a 64 KiB bitfield)
// next to other partial releases can still say Hello; a Hello that cannot
// be sent would get it disconnected by every peer after HelloTimeout.
func TestHelloOfLargestReleaseFits(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	hb := newTestHandler()
	ac, _ := connect(t, a, b, Limits{}, newTestHandler(), hb)
	bits := make([]byte, release.DefaultMaxSize/release.MinChunkSize/8)
	hello := &Hello{Releases: []HaveSet{{ID: mid(1), Bitfield: bits}, {ID: mid(2), Bitfield: bits}, {ID: mid(3), Bitfield: bits}}}
	if err := ac.Send(testCtx(t), hello); err != nil {
		t.Fatalf("Hello with three of the largest bitfields: %v", err)
	}
	if got := hb.waitNotified(t, 1)[0].(*Hello); len(got.Releases) != 3 || len(got.Releases[2].Bitfield) != len(bits) {
		t.Fatalf("received %d releases", len(got.Releases))
	}
}
