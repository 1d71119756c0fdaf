package network

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// guardedConn is the conn the DHT server reads from. The server panics when
// ReadFrom returns an error before the server is closed, so ReadFrom here
// returns an error only after Close: a deadline set by someone else is
// cleared, other errors are retried with a backoff, and a conn closed under
// us blocks until Close. It also drops packets that do not decode as KRPC,
// among them packets that make the decoder panic (see decodesSafely).
type guardedConn struct {
	net.PacketConn
	own  bool // we opened the inner conn and close it
	log  *slog.Logger
	live *liveness // told of every packet heard; filters the node lists sent

	closeOnce sync.Once
	closed    chan struct{}
	readMu    sync.Mutex // held while the inner ReadFrom runs

	dropped, readErrors atomic.Int64
}

func newGuardedConn(inner net.PacketConn, own bool, log *slog.Logger, live *liveness) *guardedConn {
	return &guardedConn{PacketConn: inner, own: own, log: log, live: live, closed: make(chan struct{})}
}

// WriteTo sends a packet; the node lists of a response lose the nodes this
// node knows to be gone (see liveness).
func (c *guardedConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	nb := c.live.filterReply(b)
	if _, err := c.PacketConn.WriteTo(nb, addr); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *guardedConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// ReadFrom reads the next packet that is safe to hand to the DHT server.
func (c *guardedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	backoff := time.Millisecond
	for {
		if c.isClosed() {
			return 0, nil, net.ErrClosed
		}
		c.readMu.Lock()
		n, addr, err := c.PacketConn.ReadFrom(b)
		c.readMu.Unlock()
		if err == nil {
			if !decodesSafely(b[:n]) {
				c.dropped.Add(1)
				c.log.Debug("dropped malformed DHT packet", "from", addr, "len", n)
				continue
			}
			if c.live.count.Load() != 0 {
				c.live.heard(addrPortOfNet(addr))
			}
			return n, addr, nil
		}
		if c.isClosed() {
			return 0, nil, net.ErrClosed
		}
		c.readErrors.Add(1)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Someone set a deadline on a conn the DHT reads: clear it.
			c.log.Warn("read deadline set on the DHT conn; clearing it", "err", err)
			_ = c.PacketConn.SetReadDeadline(time.Time{})
			continue
		case errors.Is(err, net.ErrClosed):
			c.log.Error("DHT conn closed before the node; the DHT is deaf until Close", "err", err)
			<-c.closed
			return 0, nil, net.ErrClosed
		}
		c.log.Warn("DHT conn read error; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Close stops ReadFrom. The inner conn is closed only if we opened it;
// otherwise its read deadline interrupts a blocked read and is cleared again
// once the read has returned. Close waits for a running read to return.
func (c *guardedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.own {
			err = c.PacketConn.Close()
			c.readMu.Lock() // wait for the reader to leave the inner conn
			c.readMu.Unlock()
			return
		}
		_ = c.PacketConn.SetReadDeadline(time.Now())
		c.readMu.Lock()
		_ = c.PacketConn.SetReadDeadline(time.Time{})
		c.readMu.Unlock()
	})
	return err
}

// decodesSafely reports whether b decodes as a KRPC message without error
// or panic. The server would drop a message that does not decode, but only
// after logging it through anacrolix/log's process-wide default logger; and
// some hostile input makes the decoder panic with a runtime error (for
// example krpc.NodeAddr.UnmarshalBinary given fewer than two bytes), which
// would crash the server's read loop. Trailing bytes are allowed, as the
// server allows them.
//
// A message of the usual shape (krpcShaped) is let through without a
// decode: the server's own is then the only one.
func decodesSafely(b []byte) (ok bool) {
	if len(b) < 2 || b[0] != 'd' {
		return true // the server ignores these before decoding
	}
	if krpcShaped(b) {
		return true
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	var m krpc.Msg
	err := bencode.Unmarshal(b, &m)
	var trailing bencode.ErrUnusedTrailingBytes
	return err == nil || errors.As(err, &trailing)
}
