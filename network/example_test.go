package network_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// Two nodes on loopback: the first starts alone, the second bootstraps from
// it, publishes a signed record, and the first reads it back.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := network.New(ctx, network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true,
	})
	if err != nil {
		panic(err)
	}
	defer first.Close()
	second, err := network.New(ctx, network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0",
		Bootstrap: []string{first.DHTAddr().String()},
	})
	if err != nil {
		panic(err)
	}
	defer second.Close()
	if err := second.Bootstrap(ctx); err != nil {
		panic(err)
	}

	// A publisher signs a record (release builds real ones from entries).
	var seed [ed25519.SeedSize]byte
	priv := ed25519.NewKeyFromSeed(seed[:])
	sp := &release.SignedPacket{Seq: 1, Packet: []byte("a DNS packet")}
	copy(sp.PublicKey[:], priv.Public().(ed25519.PublicKey))
	copy(sp.Sig[:], ed25519.Sign(priv, release.SignableBytes(sp.Seq, sp.Packet)))

	if err := second.PutRecord(ctx, sp); err != nil {
		panic(err)
	}
	got, _, err := first.GetRecord(ctx, sp.PublicKey)
	if err != nil {
		panic(err)
	}
	fmt.Printf("seq %d: %s\n", got.Seq, got.Packet)
	// Output: seq 1: a DNS packet
}
