package main

import (
	"context"
	"fmt"

	"github.com/rpe-project/engine/network"
)

func init() {
	register(&command{
		name:    "dht-node",
		args:    "--listen ADDR [--bootstrap HOST:PORT,...]",
		summary: "Run a bare DHT node (no releases), to bootstrap a local network.",
		run:     runDHTNode,
	})
}

func runDHTNode(ctx context.Context, e *env, args []string) error {
	c := commands["dht-node"]
	fs := newFlags(e, c)
	nf := addNetFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	if err := requireFlag("listen", *nf.listen); err != nil {
		return err
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
	<-ctx.Done()
	return nil
}
