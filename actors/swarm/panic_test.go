package swarm

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// TestServePanicDropsOnlyThatPeer: a panic while serving a chunk to one
// peer (injected through Config.ServeFault) closes that peer's connection
// and nothing else: the node goes on answering its actor messages and
// serves every chunk to another peer, through the one upload slot the
// panicking request held.
func TestServePanicDropsOnlyThatPeer(t *testing.T) {
	tr := newTestRelease(t)
	var fired atomic.Bool
	r := newRig(t, Config{MaxUploads: 1, ServeFault: func(peer wire.NodeID, id release.ManifestID, index int) {
		if fired.CompareAndSwap(false, true) {
			panic("injected fault while serving")
		}
	}}, tr)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	n := tr.sm.Manifest.NumChunks()
	get := func(c *wire.Conn, i int) ([]byte, error) {
		buf := make([]byte, tr.sm.Manifest.ChunkLen(i))
		return buf, c.GetChunk(ctx, tr.sm.ID, uint32(i), buf)
	}

	victim := r.dial(t)
	if err := victim.Send(ctx, &wire.Hello{Version: wire.ProtocolVersion, NodeID: victim.LocalID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := get(victim, 0); err == nil {
		t.Fatal("the request that panicked was answered")
	}
	select {
	case <-victim.Done():
	case <-ctx.Done():
		t.Fatal("the connection of the peer whose request panicked stayed open")
	}
	if !fired.Load() || r.ctr.servePanics.Load() != 1 {
		t.Fatalf("fault fired %v, panics counted %d; want one", fired.Load(), r.ctr.servePanics.Load())
	}

	// The node still works: its actor answers, and another peer gets every
	// chunk (which needs the slot the panicking request took).
	if _, err := r.sys.Root.RequestFuture(r.swarm, &Stats{}, waitFor).Result(); err != nil {
		t.Fatalf("swarm no longer answers: %v", err)
	}
	honest := r.dial(t)
	if err := honest.Send(ctx, &wire.Hello{Version: wire.ProtocolVersion, NodeID: honest.LocalID()}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		b, err := get(honest, i)
		for errors.Is(err, wire.ErrBusy) && ctx.Err() == nil {
			b, err = get(honest, i) // the slot may still be draining
		}
		if err != nil {
			t.Fatalf("chunk %d to a second peer after the panic: %v", i, err)
		}
		off := tr.sm.Manifest.ChunkOffset(i)
		if !bytes.Equal(b, tr.data[off:off+int64(len(b))]) {
			t.Fatalf("chunk %d: wrong bytes", i)
		}
	}
}
