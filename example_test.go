package engine_test

import (
	"context"
	"fmt"
	"log"

	engine "github.com/rpe-project/engine"
)

// A program embeds rpe by starting an engine with the publisher's key and
// its own version; the engine finds, verifies and installs newer releases
// and restarts the program into them.
func Example() {
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
