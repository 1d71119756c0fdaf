package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/rpe-project/engine/network"
)

func dhtNodeCommand() *command {
	return &command{
		name:    "dht-node",
		args:    "--listen ADDR [--bootstrap HOST:PORT,...]",
		summary: "Run a bare DHT node (no releases), to bootstrap a local network.",
		run:     runDHTNode,
	}
}

func runDHTNode(ctx context.Context, e *env, args []string) error {
	c := e.cmds["dht-node"]
	fs := newFlags(e, c)
	// No --state-dir: a bare DHT node keeps no state. --listen is
	// required, since other nodes bootstrap from its address.
	nf := netFlags{
		bootstrap: fs.String("bootstrap", "", bootstrapUsage),
		listen:    fs.String("listen", "", "UDP `ADDR` of the DHT socket, e.g. 127.0.0.1:6881 (required: other nodes bootstrap from it)"),
		stateDir:  new(string),
	}
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	if *nf.listen == "" {
		return usagef("missing --listen ADDR, e.g. --listen 127.0.0.1:6881: other nodes bootstrap from this address")
	}
	boot, err := nf.bootstrapList()
	if err != nil {
		return err
	}
	ldht, lquic, err := nf.listenAddrs()
	if err != nil {
		return err
	}
	n, err := network.New(ctx, network.Config{
		ListenDHT: ldht, ListenQUIC: lquic, Bootstrap: boot, NoBootstrap: boot == nil,
	})
	if err != nil {
		return err
	}
	defer n.Close()
	if boot != nil {
		if err := n.Bootstrap(ctx); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	fmt.Fprintf(e.stdout, "dht node on %s (Ctrl-C to stop)\n", n.DHTAddr())
	if boot != nil {
		<-ctx.Done()
		return nil
	}
	// The first node of a network has nobody to bootstrap from, but it must
	// still ping the nodes that query it: until then they are not "good"
	// and it hands none of them out, and a node known only to it stays
	// isolated. Bootstrap (which also starts the table maintainer) whenever
	// the table holds nodes.
	t := time.NewTicker(dhtNodeRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n.TableSize() > 0 {
				n.Bootstrap(ctx)
			}
		}
	}
}

// dhtNodeRefresh is how often a first node bootstraps from its own table.
const dhtNodeRefresh = 10 * time.Second
