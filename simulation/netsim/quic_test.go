package netsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"
)

const testALPN = "netsim-test"

// testTLS returns a server config with a fresh self-signed ed25519
// certificate and a client config that accepts it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
		NextProtos:   []string{testALPN},
	}
	client = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{testALPN}}
	return server, client
}

// quicPair is a QUIC connection from host a to host b over netsim.
type quicPair struct {
	client, server *quic.Conn
	close          func()
}

func dialQUIC(t testing.TB, a, b *Host) *quicPair {
	t.Helper()
	serverTLS, clientTLS := testTLS(t)
	sc, err := b.ListenPacket(0)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := a.ListenPacket(0)
	if err != nil {
		t.Fatal(err)
	}
	conf := &quic.Config{
		MaxStreamReceiveWindow:     16 << 20,
		MaxConnectionReceiveWindow: 24 << 20,
	}
	st := &quic.Transport{Conn: sc}
	ct := &quic.Transport{Conn: cc}
	ln, err := st.Listen(serverTLS, conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err := ct.Dial(ctx, sc.LocalAddr(), clientTLS, conf)
	if err != nil {
		t.Fatalf("dial over netsim: %v", err)
	}
	server := <-accepted
	if server == nil {
		t.Fatal("accept over netsim failed")
	}
	return &quicPair{
		client: client,
		server: server,
		close: func() {
			client.CloseWithError(0, "")
			server.CloseWithError(0, "")
			ln.Close()
			ct.Close()
			st.Close()
			cc.Close()
			sc.Close()
		},
	}
}

// transfer sends size bytes on a new stream from client to server and
// returns how long it took until the server had read them all.
func (p *quicPair) transfer(size int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type result struct {
		n   int64
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		s, err := p.server.AcceptStream(ctx)
		if err != nil {
			done <- result{err: err}
			return
		}
		n, err := io.Copy(io.Discard, s)
		done <- result{n: n, err: err, at: time.Now()}
	}()
	start := time.Now()
	s, err := p.client.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	for sent := int64(0); sent < size; {
		k := min(int64(len(buf)), size-sent)
		if _, err := s.Write(buf[:k]); err != nil {
			return 0, fmt.Errorf("write at %d: %w", sent, err)
		}
		sent += k
	}
	if err := s.Close(); err != nil {
		return 0, err
	}
	r := <-done
	if r.err != nil {
		return 0, r.err
	}
	if r.n != size {
		return 0, fmt.Errorf("server read %d bytes, want %d", r.n, size)
	}
	return r.at.Sub(start), nil
}

// TestQUICThroughputCap runs a real quic-go connection over two netsim hosts
// with a 10 MiB/s link, in virtual time, and checks the transfer gets within
// 20 % of the cap.
func TestQUICThroughputCap(t *testing.T) {
	const (
		capacity = 10 << 20
		size     = 6 << 20
	)
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		link := Link{Up: capacity, Down: capacity, Latency: 5 * time.Millisecond}
		a, b := addHost(t, n, link), addHost(t, n, link)
		p := dialQUIC(t, a, b)
		defer p.close()
		elapsed, err := p.transfer(size)
		if err != nil {
			t.Fatal(err)
		}
		rate := float64(size) / elapsed.Seconds()
		t.Logf("QUIC over netsim, %d MiB at a %d MiB/s cap, 20 ms RTT: %v (virtual), %.2f MiB/s = %.0f%% of the cap; a dropped %d packets",
			size>>20, capacity>>20, elapsed, rate/(1<<20), 100*rate/capacity, a.Counters().PacketsDropped)
		if rate < 0.8*capacity || rate > 1.02*capacity {
			t.Errorf("throughput %.2f MiB/s, want within 20%% of %d MiB/s", rate/(1<<20), capacity>>20)
		}
	})
}

// TestQUICLossAndCut checks QUIC survives loss on the path and a short cut.
func TestQUICLossAndCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{Seed: 3})
		defer n.Close()
		link := Link{Up: 4 << 20, Down: 4 << 20, Latency: 10 * time.Millisecond, Loss: 0.02}
		a, b := addHost(t, n, link), addHost(t, n, link)
		p := dialQUIC(t, a, b)
		defer p.close()
		if _, err := p.transfer(1 << 20); err != nil {
			t.Fatalf("transfer with 2%% loss: %v", err)
		}
		if a.Counters().PacketsDropped == 0 {
			t.Error("no packet lost at 2% loss")
		}
		b.Cut()
		go func() {
			time.Sleep(2 * time.Second)
			b.Heal()
		}()
		if _, err := p.transfer(256 << 10); err != nil {
			t.Fatalf("transfer across a 2 s cut: %v", err)
		}
	})
}

// TestQUICIdleTimeoutWhenCut checks a connection to a host that stays cut
// ends by idle timeout (the conns report no error to quic-go).
func TestQUICIdleTimeoutWhenCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNetwork(t, Config{})
		defer n.Close()
		a, b := addHost(t, n, Link{}), addHost(t, n, Link{})
		p := dialQUIC(t, a, b)
		defer p.close()
		b.Cut()
		select {
		case <-p.client.Context().Done():
		case <-time.After(time.Minute):
			t.Fatal("connection to a cut host still open after a minute")
		}
		var idle *quic.IdleTimeoutError
		if err := context.Cause(p.client.Context()); !errors.As(err, &idle) {
			t.Fatalf("connection ended with %v, want idle timeout", err)
		}
	})
}

// BenchmarkQUICOverNetsim measures one quic-go stream over two netsim hosts
// in real time: capped at 10 MiB/s (20 ms RTT) and uncapped (no latency).
func BenchmarkQUICOverNetsim(b *testing.B) {
	for _, bc := range []struct {
		name string
		link Link
		size int64
	}{
		{"cap10MiB", Link{Up: 10 << 20, Down: 10 << 20, Latency: 5 * time.Millisecond}, 8 << 20},
		{"uncapped", Link{}, 64 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := newTestNetwork(b, Config{})
			ha, hb := addHost(b, n, bc.link), addHost(b, n, bc.link)
			p := dialQUIC(b, ha, hb)
			defer p.close()
			var total time.Duration
			b.SetBytes(bc.size)
			for b.Loop() {
				d, err := p.transfer(bc.size)
				if err != nil {
					b.Fatal(err)
				}
				total += d
			}
			b.ReportMetric(float64(bc.size)*float64(b.N)/total.Seconds()/(1<<20), "MiB/s")
		})
	}
}
