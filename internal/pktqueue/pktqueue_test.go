package pktqueue

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// TestQueue: packets come out in order, cut to the reader's buffer; a full
// queue drops; the read deadline and Close end a blocked read.
func TestQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(2)
		from := netip.MustParseAddrPort("127.20.0.1:9")
		if !q.Push(Packet{From: from, Data: []byte("one")}) || !q.Push(Packet{Data: []byte("two")}) {
			t.Fatal("push refused below the limit")
		}
		if q.Push(Packet{Data: []byte("three")}) {
			t.Fatal("full queue took a packet")
		}
		b := make([]byte, 2)
		n, got, err := q.Read(b)
		if err != nil || string(b[:n]) != "on" || got != from {
			t.Fatalf("read %q from %v, %v", b[:n], got, err)
		}
		b = make([]byte, 8)
		if n, _, err := q.Read(b); err != nil || string(b[:n]) != "two" {
			t.Fatalf("read %q, %v", b[:n], err)
		}
		start := time.Now()
		q.SetReadDeadline(start.Add(time.Second))
		if _, _, err := q.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("read past the deadline: %v after %v", err, time.Since(start))
		}
		q.SetReadDeadline(time.Time{})
		done := make(chan error)
		go func() {
			_, _, err := q.Read(b)
			done <- err
		}()
		synctest.Wait()
		if !q.Close() || q.Close() {
			t.Fatal("Close did not report closing once")
		}
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked read after Close: %v", err)
		}
		if q.Push(Packet{}) || !q.Closed() {
			t.Fatal("closed queue took a packet")
		}
	})
}
