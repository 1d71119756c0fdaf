package engine_test

import (
	"context"
	"fmt"
	"log"
	"os"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/cli"
)

// A program embeds rpe by starting an engine with the publisher's key and
// its own version; the engine finds, verifies and installs newer releases
// and restarts the program into them. cli.HandleCommand first gives the
// program rpe's commands ("hello rpe publish --key K" publishes the running
// binary as hello 1.0.0); otherwise it returns at once.
func Example() {
	// "hello rpe init|publish|status ...": rpe's commands, then exit.
	cli.HandleCommand(os.Args, cli.App{Name: "hello", Version: "1.0.0"})

	ctx := context.Background()
	e, err := engine.Start(ctx, engine.Config{
		PublisherKey:   "15tjxf7sgzrujz3ax3hg8zj9ngsftjek9umhdufqmyobzpgb1qdo", // from `rpe init`
		App:            "hello",
		CurrentVersion: "1.0.0",
		// Bootstrap: nil uses the public Mainline DHT routers.
		Bootstrap: []string{"127.0.0.1:6881"},
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Stop(ctx)
	go func() {
		for ev := range e.Events() {
			if found, ok := ev.(engine.ReleaseFound); ok {
				log.Printf("updating to %s", found.Version)
			}
		}
	}()
	fmt.Println(e.Status().CurrentVersion)
	// Output: 1.0.0
}
