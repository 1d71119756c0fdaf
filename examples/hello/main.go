// Command hello is a small program that keeps itself up to date with rpe.
// It prints "hello VERSION", then runs until interrupted while the engine
// follows the publisher's key; when a newer release is verified it swaps its
// own executable and re-executes as the new version.
//
// Build a release with the version stamped in:
//
//	go build -ldflags "-X main.version=1.1.0" ./examples/hello
//
// It publishes itself too: its first line hands "hello rpe ..." to rpe's
// command line, so with no separate rpe program
//
//	./hello rpe init --out publisher.key
//	./hello rpe publish --key publisher.key     # this binary, as hello 1.1.0
//	./hello rpe status --pubkey KEY
//
// The end-to-end test (TestSelfUpdateEndToEnd) runs several copies of it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.0.0"

func main() {
	// "hello rpe COMMAND ..." runs an rpe command and exits.
	cli.HandleCommand(os.Args, cli.App{Name: "hello", Version: version})

	pubkey := flag.String("pubkey", "", "publisher public key (z-base-32)")
	bootstrap := flag.String("bootstrap", "", "comma-separated DHT starting nodes host:port")
	stateDir := flag.String("state", "", "state directory")
	poll := flag.Duration("poll", time.Minute, "record poll interval")
	listen := flag.String("listen", "127.0.0.1", "IP to listen on")
	verbose := flag.Bool("v", false, "log to stderr")
	flag.Parse()

	fmt.Printf("hello %s\n", version)
	if *pubkey == "" {
		return
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := engine.Config{
		PublisherKey:   *pubkey,
		App:            "hello",
		CurrentVersion: version,
		StateDir:       *stateDir,
		PollInterval:   *poll,
		ListenDHT:      *listen + ":0",
		ListenQUIC:     *listen + ":0",
		Logger:         logger,
	}
	if *bootstrap != "" {
		cfg.Bootstrap = strings.Split(*bootstrap, ",")
	}
	e, err := engine.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
	go func() {
		for ev := range e.Events() {
			fmt.Fprintf(os.Stderr, "hello %s: %T %+v\n", version, ev, ev)
		}
	}()
	<-ctx.Done()
	e.Stop(context.Background())
}
