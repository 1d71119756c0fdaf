package network

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// selfSigned returns a throwaway TLS certificate (the wire package makes
// the real ones from node keys).
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// TestQUICBetweenNodes: the QUIC transports of two nodes talk to each
// other on the port the DHT announces, and Close tears down a listening
// transport.
func TestQUICBetweenNodes(t *testing.T) {
	cfg := testConfig(t)
	cfg.NoBootstrap = true
	a := newTestNode(t, cfg)
	b := newTestNode(t, cfg)
	ln, err := a.Transport().Listen(&tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	echoed := make(chan error, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			echoed <- err
			return
		}
		s, err := c.AcceptStream(ctx)
		if err != nil {
			echoed <- err
			return
		}
		_, err = io.Copy(s, s)
		s.Close()
		echoed <- err
	}()
	c, err := b.Transport().Dial(ctx, net.UDPAddrFromAddrPort(a.QUICAddr()),
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"test"}}, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("over quic")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "over quic" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if err := <-echoed; err != nil {
		t.Fatal(err)
	}
	c.CloseWithError(0, "")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(ctx); err == nil {
		t.Fatal("listener still accepting after Node.Close")
	}
}
