package wire

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/release"
)

// waitFor bounds every wait in these tests; nothing sleeps.
const waitFor = 10 * time.Second

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func idOf(k ed25519.PrivateKey) NodeID { return NodeIDOf(k.Public().(ed25519.PublicKey)) }

// newTransport returns a QUIC transport on a fresh loopback UDP socket.
func newTransport(t testing.TB) *quic.Transport {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: uc}
	t.Cleanup(func() { tr.Close(); uc.Close() })
	return tr
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// testHandler serves fixed manifests and chunks and records notifications.
type testHandler struct {
	manifests map[release.ManifestID][]byte
	chunks    map[release.ManifestID][][]byte
	// chunkFunc, when set, overrides chunks.
	chunkFunc func(id release.ManifestID, index uint32, buf []byte) ([]byte, error)

	mu       sync.Mutex
	notified []Message
	from     []NodeID
	got      chan struct{} // one value per notification
}

func newTestHandler() *testHandler {
	return &testHandler{
		manifests: map[release.ManifestID][]byte{},
		chunks:    map[release.ManifestID][][]byte{},
		got:       make(chan struct{}, 1024),
	}
}

func (h *testHandler) Manifest(id release.ManifestID) ([]byte, error) {
	if m, ok := h.manifests[id]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("manifest %s: %w", id.Short(), ErrNotFound)
}

func (h *testHandler) Chunk(id release.ManifestID, index uint32, buf []byte) ([]byte, error) {
	if h.chunkFunc != nil {
		return h.chunkFunc(id, index, buf)
	}
	cs, ok := h.chunks[id]
	if !ok {
		return nil, ErrNotFound
	}
	if int(index) >= len(cs) {
		return nil, fmt.Errorf("index %d of %d: %w", index, len(cs), ErrBadIndex)
	}
	return append(buf, cs[index]...), nil
}

func (h *testHandler) Notify(from NodeID, m Message) {
	h.mu.Lock()
	h.notified = append(h.notified, m)
	h.from = append(h.from, from)
	h.mu.Unlock()
	h.got <- struct{}{}
}

// waitNotified waits for n notifications in total.
func (h *testHandler) waitNotified(t testing.TB, n int) []Message {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		h.mu.Lock()
		have := len(h.notified)
		h.mu.Unlock()
		if have >= n {
			break
		}
		select {
		case <-h.got:
		case <-deadline:
			t.Fatalf("got %d notifications, want %d", have, n)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Message(nil), h.notified...)
}

// node is one side of a test: its key, transport and (if listening) listener.
type node struct {
	key ed25519.PrivateKey
	id  NodeID
	tr  *quic.Transport
	ln  *Listener
}

func newNode(t testing.TB, lim Limits) *node {
	t.Helper()
	n := &node{key: newKey(t), tr: newTransport(t)}
	n.id = idOf(n.key)
	ln, err := Listen(n.tr, n.key, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n.ln = ln
	return n
}

// served is a connection whose Serve runs in the background.
type served struct {
	*Conn
	done chan error // Serve's result
}

func serve(t testing.TB, c *Conn, h Handler) *served {
	s := &served{Conn: c, done: make(chan error, 1)}
	go func() { s.done <- c.Serve(context.Background(), h) }()
	t.Cleanup(func() {
		c.Close(CodeNone, "test over")
		select {
		case <-s.done:
		case <-time.After(waitFor):
			t.Error("Serve did not return after Close")
		}
	})
	return s
}

// result waits for Serve's result.
func (s *served) result(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(waitFor):
		t.Fatal("Serve did not return")
		return nil
	}
}

// connect dials b from a and returns both ends, each served by its handler.
func connect(t testing.TB, a, b *node, lim Limits, ha, hb Handler) (ac, bc *served) {
	t.Helper()
	ctx := testCtx(t)
	type res struct {
		c   *Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := b.ln.Accept(ctx)
		acc <- res{c, err}
	}()
	c, err := Dial(ctx, a.tr, b.ln.Addr(), a.key, b.id, lim)
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c.RemoteID() != a.id || c.RemoteID() != b.id {
		t.Fatalf("accepted %s dialled %s, want %s and %s", r.c.RemoteID(), c.RemoteID(), a.id, b.id)
	}
	return serve(t, c, ha), serve(t, r.c, hb)
}

// sayHello sends a Hello from each end, as a real node does at once; a
// connection that runs longer than HelloTimeout needs it.
func sayHello(t testing.TB, ends ...*served) {
	t.Helper()
	for _, c := range ends {
		if err := c.Send(testCtx(t), &Hello{}); err != nil {
			t.Fatal(err)
		}
	}
}

// waitClosed waits until qc is closed and returns the application error
// code it was closed with by the peer.
func waitClosed(t testing.TB, qc *quic.Conn) *quic.ApplicationError {
	t.Helper()
	select {
	case <-qc.Context().Done():
	case <-time.After(waitFor):
		t.Fatal("connection not closed")
	}
	var ae *quic.ApplicationError
	if !errors.As(context.Cause(qc.Context()), &ae) {
		t.Fatalf("closed with %v, want an application error", context.Cause(qc.Context()))
	}
	return ae
}

func waitDone(t testing.TB, c *Conn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("connection not closed")
	}
}

func mid(b byte) release.ManifestID {
	var id release.ManifestID
	for i := range id {
		id[i] = b
	}
	return id
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

var _ = bytes.Equal
