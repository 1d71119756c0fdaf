package wire

import (
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// Limits bounds what a peer can make a Conn do. A zero field takes its
// default; a negative one is an error.
type Limits struct {
	// MaxFrame caps control frames without a fixed size (Hello, Peers).
	// Default 256 KiB, so that a Hello with three partial releases of the
	// largest size (8 GiB in 16 KiB chunks, 64 KiB of bitfield each) fits.
	MaxFrame int
	// MaxManifest caps a manifest, received or served. Default 4 MiB.
	MaxManifest int
	// MaxChunk caps a chunk, received or served. Default 4 MiB.
	MaxChunk int
	// MaxPeers caps the addresses in one Peers message. Default 200.
	MaxPeers int
	// MaxInflight is how many requests a peer may have open on this node at
	// once (QUIC's MaxIncomingStreams); a requester past it waits. Default 32.
	MaxInflight int
	// RequestTimeout is how long a peer has to send its request once it has
	// opened a stream. Default 10 s.
	RequestTimeout time.Duration
	// HelloTimeout is how long a peer has, from the start of Serve, to send
	// its whole Hello; a peer still silent then is disconnected with
	// CodeProtocol. Without it keep-alives would hold a connection that
	// never says anything open for ever. Default 30 s.
	HelloTimeout time.Duration
	// AnswerTimeout is how long a peer has to take one answer (manifest,
	// chunk or error) from this node; an answer it does not read in time is
	// abandoned (the stream is reset with CodeCancelled), freeing the
	// goroutine, the buffer and the upload slot it held. Default 30 s.
	AnswerTimeout time.Duration
	// MinAnswerRate is the slowest a peer may take a chunk or manifest
	// answer, in bytes per second: each piece of an answer (32 KiB) must be
	// taken within SlowAnswerGrace plus its time at this rate, or the answer
	// is abandoned as AnswerTimeout would, freeing its upload slot within
	// seconds instead of half a minute (slow retrieval). Default 16 KiB/s.
	MinAnswerRate int
	// SlowAnswerGrace is the slack added to each piece's time at
	// MinAnswerRate. Default 2 s.
	SlowAnswerGrace time.Duration
	// IdleTimeout closes a connection that has heard nothing for this long.
	// Default 30 s.
	IdleTimeout time.Duration
	// KeepAlive is the period of keep-alive packets. Default 10 s.
	KeepAlive time.Duration
	// StreamWindow is the largest receive window of one stream. Default 16 MiB.
	StreamWindow int
	// ConnWindow is the largest receive window of a connection. Default 32 MiB.
	ConnWindow int
}

// Default limits.
const (
	DefaultMaxFrame       = 256 << 10
	DefaultMaxManifest    = 4 << 20
	DefaultMaxChunk       = 4 << 20
	DefaultMaxPeers       = 200
	DefaultMaxInflight    = 32
	DefaultRequestTimeout = 10 * time.Second
	DefaultHelloTimeout   = 30 * time.Second
	DefaultAnswerTimeout  = 30 * time.Second
	DefaultIdleTimeout    = 30 * time.Second
	DefaultMinAnswerRate  = 16 << 10
	DefaultSlowGrace      = 2 * time.Second
	DefaultKeepAlive      = 10 * time.Second
	DefaultStreamWindow   = 16 << 20
	DefaultConnWindow     = 32 << 20
)

// maxFrameLimit keeps every limit inside the 4-byte frame length.
const maxFrameLimit = 1 << 30

// withDefaults fills zero fields and rejects negative or absurd ones.
func (l Limits) withDefaults() (Limits, error) {
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxFrame", &l.MaxFrame, DefaultMaxFrame},
		{"MaxManifest", &l.MaxManifest, DefaultMaxManifest},
		{"MaxChunk", &l.MaxChunk, DefaultMaxChunk},
		{"MaxPeers", &l.MaxPeers, DefaultMaxPeers},
		{"MaxInflight", &l.MaxInflight, DefaultMaxInflight},
		{"StreamWindow", &l.StreamWindow, DefaultStreamWindow},
		{"ConnWindow", &l.ConnWindow, DefaultConnWindow},
		{"MinAnswerRate", &l.MinAnswerRate, DefaultMinAnswerRate},
	}
	for _, f := range ints {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0 || *f.v > maxFrameLimit:
			return l, fmt.Errorf("wire: limit %s = %d out of range", f.name, *f.v)
		}
	}
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RequestTimeout", &l.RequestTimeout, DefaultRequestTimeout},
		{"HelloTimeout", &l.HelloTimeout, DefaultHelloTimeout},
		{"AnswerTimeout", &l.AnswerTimeout, DefaultAnswerTimeout},
		{"IdleTimeout", &l.IdleTimeout, DefaultIdleTimeout},
		{"KeepAlive", &l.KeepAlive, DefaultKeepAlive},
		{"SlowAnswerGrace", &l.SlowAnswerGrace, DefaultSlowGrace},
	}
	for _, f := range durs {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0:
			return l, fmt.Errorf("wire: limit %s = %v is negative", f.name, *f.v)
		}
	}
	return l, nil
}

// frameLimit is the largest payload a control or request frame of type t
// may have under l; -1 for types that never travel on such streams.
func (l Limits) frameLimit(t Type) int {
	switch t {
	case TypeHello:
		return l.MaxFrame
	case TypePeers:
		return min(l.MaxFrame, 2+l.MaxPeers*peerEntryMax)
	case TypeReachPeers:
		return min(l.MaxFrame, 3+l.MaxPeers*reachEntryMax)
	case TypeHave, TypeRecord, TypeGetManifest, TypeGetChunk, TypeError:
		return typeCap(t)
	case TypeManifest:
		return l.MaxManifest
	case TypeChunk:
		return l.MaxChunk
	}
	return -1
}

// quicConfig is the QUIC configuration of every rpe connection.
func (l Limits) quicConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:  l.IdleTimeout,
		KeepAlivePeriod: l.KeepAlive,
		// Start large enough that a whole chunk fits without a window
		// update; auto-tuning grows the windows up to the maxima.
		InitialStreamReceiveWindow:     uint64(min(l.StreamWindow, 2<<20)),
		MaxStreamReceiveWindow:         uint64(l.StreamWindow),
		InitialConnectionReceiveWindow: uint64(min(l.ConnWindow, 4<<20)),
		MaxConnectionReceiveWindow:     uint64(l.ConnWindow),
		MaxIncomingStreams:             int64(l.MaxInflight),
		// One control stream per direction, for the connection's lifetime.
		MaxIncomingUniStreams: 1,
	}
}

// QUICConfig is the quic-go configuration wire uses for these limits (zero
// fields take their defaults). Benchmarks use it to compare wire with a
// bare quic-go stream configured alike.
func (l Limits) QUICConfig() (*quic.Config, error) {
	l, err := l.withDefaults()
	if err != nil {
		return nil, err
	}
	return l.quicConfig(), nil
}
