package wire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/release"
)

// rawPeer dials b with a plain quic-go connection carrying a valid node
// certificate, so a test can write any bytes; b's side is served by h.
func rawPeer(t *testing.T, b *node, h Handler) (*quic.Conn, *served) {
	t.Helper()
	return rawPeerConfig(t, b, h, &quic.Config{})
}

// rawPeerConfig is rawPeer with the raw side's QUIC configuration.
func rawPeerConfig(t *testing.T, b *node, h Handler, qconf *quic.Config) (*quic.Conn, *served) {
	t.Helper()
	ctx := testCtx(t)
	acc := make(chan *Conn, 1)
	go func() {
		c, err := b.ln.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	key := newKey(t)
	tc, err := ClientTLS(key, b.id)
	if err != nil {
		t.Fatal(err)
	}
	qc, err := newTransport(t).Dial(ctx, b.ln.Addr(), tc, qconf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	c := <-acc
	if c == nil {
		t.FailNow()
	}
	return qc, serve(t, c, h)
}

func header(t Type, n uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{byte(t)}, n)
}

func helloFrame(t *testing.T, id NodeID, version uint16) []byte {
	f, err := EncodeMessage(&Hello{Version: version, NodeID: id})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestAbuseDisconnects sends each kind of bad input from a raw peer and
// checks both the code the peer is disconnected with and Serve's error.
func TestAbuseDisconnects(t *testing.T) {
	type sendFunc func(t *testing.T, qc *quic.Conn, self NodeID)
	control := func(frames ...[]byte) sendFunc {
		return func(t *testing.T, qc *quic.Conn, _ NodeID) {
			s, err := qc.OpenUniStream()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range frames {
				s.Write(f)
			}
		}
	}
	request := func(data []byte, fin bool) sendFunc {
		return func(t *testing.T, qc *quic.Conn, _ NodeID) {
			s, err := qc.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			s.Write(data)
			if fin {
				s.Close()
			}
		}
	}
	getChunk, _ := EncodeMessage(&GetChunk{ID: mid(1), Index: 99})
	cases := []struct {
		name string
		send sendFunc
		code ErrorCode
		err  error
	}{
		{"oversize Hello", control(header(TypeHello, 1<<30)), CodeFrameTooLarge, ErrFrameTooLarge},
		{"oversize request", request(header(TypeGetChunk, 37), false), CodeFrameTooLarge, ErrFrameTooLarge},
		{"oversize Record", func(t *testing.T, qc *quic.Conn, self NodeID) {
			control(helloFrame(t, self, ProtocolVersion), header(TypeRecord, MaxRecord+1))(t, qc, self)
		}, CodeFrameTooLarge, ErrFrameTooLarge},
		{"unknown control message", control(header(0x7f, 0)), CodeUnknownMessage, ErrUnknownMessage},
		{"unknown request", request(header(0x6e, 3), true), CodeUnknownMessage, ErrUnknownMessage},
		{"request on control stream", control(header(TypeGetManifest, 32)), CodeProtocol, ErrProtocol},
		{"answer as request", request(header(TypeChunk, 1), true), CodeProtocol, ErrProtocol},
		{"short Have", func(t *testing.T, qc *quic.Conn, self NodeID) {
			control(helloFrame(t, self, ProtocolVersion), append(header(TypeHave, 10), make([]byte, 10)...))(t, qc, self)
		}, CodeProtocol, ErrProtocol},
		{"first message not Hello", control(append(header(TypeHave, 36), make([]byte, 36)...)), CodeProtocol, ErrProtocol},
		{"Hello with another node ID", func(t *testing.T, qc *quic.Conn, _ NodeID) {
			control(helloFrame(t, idOf(newKey(t)), ProtocolVersion))(t, qc, NodeID{})
		}, CodeBadNodeID, ErrBadNodeID},
		{"Hello of another version", func(t *testing.T, qc *quic.Conn, self NodeID) {
			control(helloFrame(t, self, 2))(t, qc, self)
		}, CodeVersion, ErrVersion},
		{"control stream ended", func(t *testing.T, qc *quic.Conn, self NodeID) {
			s, _ := qc.OpenUniStream()
			s.Write(helloFrame(t, self, ProtocolVersion))
			s.Close()
		}, CodeProtocol, ErrProtocol},
		{"control stream reset", func(t *testing.T, qc *quic.Conn, self NodeID) {
			s, _ := qc.OpenUniStream()
			s.Write(helloFrame(t, self, ProtocolVersion))
			s.CancelWrite(1)
		}, CodeProtocol, ErrProtocol},
		{"truncated request", request(header(TypeGetChunk, 36), true), CodeProtocol, ErrProtocol},
		{"data after request", request(append(getChunk, 0), true), CodeProtocol, ErrProtocol},
		{"bad chunk index", request(getChunk, true), CodeBadIndex, ErrBadIndex},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newNode(t, Limits{})
			h := newTestHandler()
			h.chunks[mid(1)] = [][]byte{{1}}
			qc, srv := rawPeer(t, b, h)
			self := srv.RemoteID() // the raw peer's ID, as the server derived it
			tc.send(t, qc, self)
			ae := waitClosed(t, qc)
			if !ae.Remote || ErrorCode(ae.ErrorCode) != tc.code {
				t.Fatalf("closed with %v, want code %s", ae, tc.code)
			}
			if err := srv.result(t); !errors.Is(err, tc.err) {
				t.Fatalf("Serve = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestBadChunkIndexDisconnects(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	hb := newTestHandler()
	hb.chunks[mid(1)] = [][]byte{{1}}
	ac, bc := connect(t, a, b, Limits{}, newTestHandler(), hb)
	err := ac.GetChunk(testCtx(t), mid(1), 7, make([]byte, 1))
	if !errors.Is(err, ErrBadIndex) {
		t.Fatalf("GetChunk = %v, want ErrBadIndex", err)
	}
	waitDone(t, ac.Conn)
	if err := ac.result(t); !errors.Is(err, ErrBadIndex) {
		t.Fatalf("requester Serve = %v", err)
	}
	if err := bc.result(t); !errors.Is(err, ErrBadIndex) {
		t.Fatalf("server Serve = %v", err)
	}
}

// TestBadAnswersDisconnect: answers longer or shorter than asked for, and a
// manifest over the requester's limit, disconnect the answering peer.
func TestBadAnswersDisconnect(t *testing.T) {
	cases := []struct {
		name string
		get  func(ctx context.Context, c *Conn) error
		code ErrorCode
		err  error
	}{
		{"chunk too long", func(ctx context.Context, c *Conn) error {
			return c.GetChunk(ctx, mid(1), 0, make([]byte, 99))
		}, CodeFrameTooLarge, ErrFrameTooLarge},
		{"chunk too short", func(ctx context.Context, c *Conn) error {
			return c.GetChunk(ctx, mid(1), 0, make([]byte, 101))
		}, CodeProtocol, ErrProtocol},
		{"manifest too long", func(ctx context.Context, c *Conn) error {
			_, err := c.GetManifest(ctx, mid(1))
			return err
		}, CodeFrameTooLarge, ErrFrameTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lim := Limits{MaxManifest: 50}
			a, b := newNode(t, lim), newNode(t, Limits{})
			hb := newTestHandler()
			hb.manifests[mid(1)] = make([]byte, 51)
			hb.chunks[mid(1)] = [][]byte{make([]byte, 100)}
			ac, bc := connect(t, a, b, lim, newTestHandler(), hb)
			if err := tc.get(testCtx(t), ac.Conn); !errors.Is(err, tc.err) {
				t.Fatalf("request = %v, want %v", err, tc.err)
			}
			if err := bc.result(t); !errors.Is(err, tc.err) {
				t.Fatalf("answering peer's Serve = %v, want %v", err, tc.err)
			}
			var e *Error
			if err := bc.Err(); !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("answering peer closed with %v, want code %s", err, tc.code)
			}
		})
	}
}

func TestRequestTimeoutDropsStreamOnly(t *testing.T) {
	lim := Limits{RequestTimeout: 50 * time.Millisecond}
	b := newNode(t, lim)
	h := newTestHandler()
	h.chunks[mid(1)] = [][]byte{{5}}
	qc, _ := rawPeer(t, b, h)
	s, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	s.Write(header(TypeGetChunk, 36)[:3]) // then silence
	s.SetReadDeadline(time.Now().Add(waitFor))
	_, err = s.Read(make([]byte, 1))
	var se *quic.StreamError
	if !errors.As(err, &se) || !se.Remote || ErrorCode(se.ErrorCode) != CodeCancelled {
		t.Fatalf("silent request: %v, want a remote stream reset", err)
	}
	if qc.Context().Err() != nil {
		t.Fatal("connection closed for a slow request")
	}
	s2, _ := qc.OpenStream()
	f, _ := EncodeMessage(&GetChunk{ID: mid(1)})
	s2.Write(f)
	s2.Close()
	s2.SetReadDeadline(time.Now().Add(waitFor))
	typ, p, err := ReadFrame(s2, 10)
	if err != nil || typ != TypeChunk || len(p) != 1 || p[0] != 5 {
		t.Fatalf("next request: %v %v %v", typ, p, err)
	}
}

func TestWrongNodeIDRefused(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	ctx := testCtx(t)
	other := idOf(newKey(t))
	_, err := Dial(ctx, a.tr, b.ln.Addr(), a.key, other, Limits{})
	if !errors.Is(err, ErrBadNodeID) {
		t.Fatalf("Dial expecting another node = %v, want ErrBadNodeID", err)
	}
	// The right ID, and the zero ID, are accepted.
	for _, want := range []NodeID{b.id, {}} {
		c, err := Dial(ctx, a.tr, b.ln.Addr(), a.key, want, Limits{})
		if err != nil {
			t.Fatalf("Dial expecting %s: %v", want, err)
		}
		if c.RemoteID() != b.id {
			t.Fatalf("RemoteID %s, want %s", c.RemoteID(), b.id)
		}
		c.Close(CodeNone, "")
	}
}

func TestWrongALPNRefused(t *testing.T) {
	b := newNode(t, Limits{})
	ctx := testCtx(t)
	// A client that speaks another protocol cannot reach an rpe node.
	tc, _ := ClientTLS(newKey(t), b.id)
	tc.NextProtos = []string{"h3"}
	if _, err := newTransport(t).Dial(ctx, b.ln.Addr(), tc, nil); err == nil || !isCryptoError(err) {
		t.Fatalf("dial with ALPN h3 = %v, want a TLS failure", err)
	}
	// An rpe client cannot connect to a server of another protocol.
	srvTr := newTransport(t)
	st, _ := ServerTLS(newKey(t))
	st.NextProtos = []string{"h3"}
	ln, err := srvTr.Listen(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Dial(ctx, newTransport(t), ln.Addr(), newKey(t), NodeID{}, Limits{}); err == nil || !isCryptoError(err) {
		t.Fatalf("rpe dial to an h3 server = %v, want a TLS failure", err)
	}
}

func TestClientWithoutNodeCertRefused(t *testing.T) {
	b := newNode(t, Limits{})
	ctx := testCtx(t)
	// In TLS 1.3 the client finishes before the server has checked its
	// certificate, so the dial may succeed; the server then closes the
	// connection with a TLS alert and never hands it to Accept.
	refused := func(name string, tc *tls.Config) {
		qc, err := newTransport(t).Dial(ctx, b.ln.Addr(), tc, nil)
		if err == nil {
			select {
			case <-qc.Context().Done():
				err = context.Cause(qc.Context())
			case <-time.After(waitFor):
				t.Fatalf("%s: connection stayed open", name)
			}
		}
		if !isCryptoError(err) {
			t.Fatalf("%s: %v, want a TLS failure", name, err)
		}
	}
	tc, _ := ClientTLS(newKey(t), b.id)
	tc.Certificates = nil
	refused("no client certificate", tc)

	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ek.PublicKey, ek)
	tc = tc.Clone()
	tc.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: ek}}
	refused("ECDSA client certificate", tc)

	// A well-behaved node is still accepted afterwards, and is the first
	// connection Accept returns.
	a := newNode(t, Limits{})
	connect(t, a, b, Limits{}, newTestHandler(), newTestHandler())
}

// isCryptoError reports whether err is a QUIC CRYPTO_ERROR (a TLS alert).
func isCryptoError(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.ErrorCode >= 0x100 && te.ErrorCode <= 0x1ff
}

var _ = release.ManifestID{}
