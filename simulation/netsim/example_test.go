package netsim_test

import (
	"fmt"
	"time"

	"github.com/rpe-project/engine/simulation/netsim"
)

// A publisher with a slow uplink and a node, each with a DHT and a QUIC conn
// sharing the host's link.
func Example() {
	n, err := netsim.New(netsim.Config{Seed: 1})
	if err != nil {
		panic(err)
	}
	defer n.Close()
	publisher, _ := n.AddHost(netsim.Link{Up: 1 << 20, Down: 10 << 20, Latency: 20 * time.Millisecond})
	node, _ := n.AddHost(netsim.Link{Up: 2 << 20, Down: 20 << 20, Latency: 5 * time.Millisecond, Loss: 0.01})
	pubDHT, _ := publisher.ListenPacket(6881)
	nodeDHT, _ := node.ListenPacket(6881)
	nodeQUIC, _ := node.ListenPacket(0) // pass these to anacrolix/dht and quic-go

	pubDHT.WriteTo([]byte("ping"), nodeDHT.LocalAddr())
	buf := make([]byte, 1500)
	k, from, _ := nodeDHT.ReadFrom(buf)
	fmt.Printf("%s from %s\n", buf[:k], from)
	fmt.Println("QUIC conn at", nodeQUIC.LocalAddr())

	// Cut the publisher off from everyone else.
	n.Partition([]*netsim.Host{publisher})
	defer n.HealPartition()
	// Output:
	// ping from 127.20.0.1:6881
	// QUIC conn at 127.20.0.2:49152
}
