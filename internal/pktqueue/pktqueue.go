// Package pktqueue is the receive side of an in-memory datagram conn: a
// bounded FIFO of packets with the blocking read a net.PacketConn has (wait
// for a packet, the conn's close, or the read deadline). The simulated
// network's conns (simulation/netsim) and relayed sessions (network's
// RelayConn) both deliver into one. It has no goroutine; a read that waits
// blocks on channels only, so it runs in testing/synctest bubbles.
package pktqueue

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Packet is one queued datagram.
type Packet struct {
	From netip.AddrPort
	Data []byte
}

// Queue is a bounded packet FIFO. Its methods are safe for concurrent use.
type Queue struct {
	limit   int
	done    chan struct{} // closed by Close
	ready   chan struct{} // cap 1: a packet was queued
	resched chan struct{} // closed and replaced when the read deadline changes

	mu       sync.Mutex
	queue    []Packet
	head     int
	closed   bool
	deadline time.Time
}

// New returns a queue that holds at most limit packets.
func New(limit int) *Queue {
	return &Queue{
		limit:   limit,
		done:    make(chan struct{}),
		ready:   make(chan struct{}, 1),
		resched: make(chan struct{}),
	}
}

// Push queues p (it keeps p.Data, not a copy); it reports false, dropping
// the packet, if the queue is closed or full.
func (q *Queue) Push(p Packet) bool {
	q.mu.Lock()
	if q.closed || len(q.queue)-q.head >= q.limit {
		q.mu.Unlock()
		return false
	}
	if q.head > 0 && len(q.queue) == cap(q.queue) {
		// Slide the live packets to the front instead of growing.
		k := copy(q.queue, q.queue[q.head:])
		clear(q.queue[k:])
		q.queue = q.queue[:k]
		q.head = 0
	}
	q.queue = append(q.queue, p)
	q.mu.Unlock()
	signal(q.ready)
	return true
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Read copies the next packet into b (cut to len(b), as UDP does) and
// returns its length and sender. It blocks until a packet arrives, the
// queue is closed (net.ErrClosed) or the read deadline passes
// (os.ErrDeadlineExceeded); the caller wraps those as its conn's errors.
func (q *Queue) Read(b []byte) (int, netip.AddrPort, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return 0, netip.AddrPort{}, net.ErrClosed
		}
		if q.head < len(q.queue) {
			p := q.queue[q.head]
			q.queue[q.head] = Packet{}
			q.head++
			if q.head == len(q.queue) {
				q.queue, q.head = q.queue[:0], 0
			} else {
				signal(q.ready) // wake another reader for the rest
			}
			q.mu.Unlock()
			return copy(b, p.Data), p.From, nil
		}
		deadline, resched := q.deadline, q.resched
		q.mu.Unlock()

		var expired <-chan time.Time
		if !deadline.IsZero() {
			wait := time.Until(deadline)
			if wait <= 0 {
				return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			expired = timer.C
		}
		select {
		case <-q.ready:
		case <-resched:
		case <-expired:
		case <-q.done:
		}
	}
}

// SetReadDeadline sets when a blocked or later Read gives up; zero means
// never.
func (q *Queue) SetReadDeadline(t time.Time) {
	q.mu.Lock()
	q.deadline = t
	close(q.resched)
	q.resched = make(chan struct{})
	q.mu.Unlock()
}

// Close drops the queued packets and wakes blocked reads; it reports
// whether this call closed the queue (false if it was closed already).
func (q *Queue) Close() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.closed = true
	q.queue, q.head = nil, 0
	close(q.done)
	return true
}

// Closed reports whether Close has been called.
func (q *Queue) Closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}
