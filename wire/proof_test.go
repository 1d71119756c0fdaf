package wire

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// rawPair dials b from a and returns both ends, not yet served.
func rawPair(t testing.TB, a, b *node, lim Limits) (dialed, accepted *Conn) {
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
	c, err := Dial(ctx, a.tr, b.ln.Addr(), a.key, b.id, lim)
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r == nil {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close(CodeNone, ""); r.Close(CodeNone, "") })
	return c, r
}

// proveBoth runs Prove on both ends at once and returns their errors.
func proveBoth(t testing.TB, d, l *Conn, dk, lk []byte) (derr, lerr error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Prove(testCtx(t), lk) }()
	derr = d.Prove(testCtx(t), dk)
	return derr, <-done
}

var (
	proofKeyA = bytes.Repeat([]byte{0xa1}, 32)
	proofKeyB = bytes.Repeat([]byte{0xb2}, 32)
)

// countingHandler counts every request it is asked.
type countingHandler struct {
	*testHandler
	asked atomic.Int64
}

func (h *countingHandler) Chunk(id release.ManifestID, index uint32, buf []byte) ([]byte, error) {
	h.asked.Add(1)
	return h.testHandler.Chunk(id, index, buf)
}

func (h *countingHandler) notifiedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.notified)
}

func (h *countingHandler) Manifest(id release.ManifestID) ([]byte, error) {
	h.asked.Add(1)
	return h.testHandler.Manifest(id)
}

func TestProveSameSecret(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	d, l := rawPair(t, a, b, Limits{})
	if derr, lerr := proveBoth(t, d, l, proofKeyA, proofKeyA); derr != nil || lerr != nil {
		t.Fatalf("prove: dialer %v, listener %v", derr, lerr)
	}
	// Then the connection works as any other.
	h := newTestHandler()
	h.manifests[mid(1)] = []byte("manifest bytes")
	serve(t, l, h)
	serve(t, d, newTestHandler())
	got, err := d.GetManifest(testCtx(t), mid(1))
	if err != nil || string(got) != "manifest bytes" {
		t.Fatalf("GetManifest after proof: %q, %v", got, err)
	}
}

func TestProveWrongSecret(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	d, l := rawPair(t, a, b, Limits{})
	derr, lerr := proveBoth(t, d, l, proofKeyA, proofKeyB)
	if !errors.Is(lerr, ErrNoProof) {
		t.Errorf("listener: %v, want ErrNoProof", lerr)
	}
	if !errors.Is(derr, ErrNoProof) {
		t.Errorf("dialer: %v, want ErrNoProof", derr)
	}
	waitDone(t, d)
	waitDone(t, l)
}

// TestOutsiderDialsInsider: a node without the secret dials a private node
// and asks for a manifest at once. The insider finds no proof, serves
// nothing and drops it.
func TestOutsiderDialsInsider(t *testing.T) {
	outsider, insider := newNode(t, Limits{}), newNode(t, Limits{})
	d, l := rawPair(t, outsider, insider, Limits{})
	h := &countingHandler{testHandler: newTestHandler()}
	h.manifests[mid(1)] = []byte("secret manifest")
	proved := make(chan error, 1)
	go func() {
		err := l.Prove(testCtx(t), proofKeyA)
		if err == nil {
			serve(t, l, h)
		}
		proved <- err
	}()
	serve(t, d, newTestHandler())
	got, err := d.GetManifest(testCtx(t), mid(1))
	if err == nil || got != nil {
		t.Fatalf("outsider got %q, %v; want nothing", got, err)
	}
	if err := <-proved; !errors.Is(err, ErrNoProof) {
		t.Fatalf("insider: %v, want ErrNoProof", err)
	}
	if ae := waitClosed(t, d.qc); ErrorCode(ae.ErrorCode) != CodeNoProof {
		t.Fatalf("outsider dropped with %v, want code %d", ae, CodeNoProof)
	}
	if n := h.asked.Load(); n != 0 {
		t.Fatalf("insider's handler asked %d times", n)
	}
}

// TestInsiderDialsOutsider: a private node that dials a public one (which
// serves at once) learns it has no proof and drops it; the outsider's
// handler is asked nothing, as the insider sends nothing but its proof.
func TestInsiderDialsOutsider(t *testing.T) {
	insider, outsider := newNode(t, Limits{}), newNode(t, Limits{})
	d, l := rawPair(t, insider, outsider, Limits{})
	h := &countingHandler{testHandler: newTestHandler()}
	s := serve(t, l, h)
	if err := d.Prove(testCtx(t), proofKeyA); !errors.Is(err, ErrNoProof) && !errors.Is(err, ErrProtocol) {
		t.Fatalf("insider: %v, want ErrNoProof or ErrProtocol", err)
	}
	waitDone(t, d)
	s.result(t)
	if n := h.asked.Load(); n != 0 || h.notifiedCount() != 0 {
		t.Fatalf("outsider's handler asked %d times, notified %d", n, h.notifiedCount())
	}
}

// TestSilentPeerGivesNoProof: a peer that never proves is dropped after
// HelloTimeout.
func TestSilentPeerGivesNoProof(t *testing.T) {
	lim := Limits{HelloTimeout: 200 * time.Millisecond}
	a, b := newNode(t, lim), newNode(t, lim)
	_, l := rawPair(t, a, b, lim)
	if err := l.Prove(context.Background(), proofKeyA); !errors.Is(err, ErrNoProof) {
		t.Fatalf("listener: %v, want ErrNoProof", err)
	}
	waitDone(t, l)
}

// TestProofBoundToSession: the same two nodes and secret give another
// proof on another connection, so a proof seen once cannot be replayed.
func TestProofBoundToSession(t *testing.T) {
	a, b := newNode(t, Limits{}), newNode(t, Limits{})
	d1, _ := rawPair(t, a, b, Limits{})
	d2, _ := rawPair(t, a, b, Limits{})
	m1, err1 := d1.proofMAC(proofKeyA, 'D')
	m2, err2 := d2.proofMAC(proofKeyA, 'D')
	l1, err3 := d1.proofMAC(proofKeyA, 'L')
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	if bytes.Equal(m1, m2) || bytes.Equal(m1, l1) {
		t.Fatal("proof not bound to the session and role")
	}
}
