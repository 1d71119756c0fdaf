package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/release"
)

// Start runs a node until Stop; its events say what it does, and Status
// what it is doing. Cancelling Start's context after it returns does not
// stop the node.
func ExampleStart() {
	ctx := context.Background()
	e, err := engine.Start(ctx, engine.Config{
		PublisherKey:   "15tjxf7sgzrujz3ax3hg8zj9ngsftjek9umhdufqmyobzpgb1qdo",
		App:            "hello",
		CurrentVersion: "1.0.0",
		Apply:          engine.ApplyAt(3, 0), // install at the next 03:00
		Bootstrap:      []string{"127.0.0.1:6881"},
		MetricsAddr:    "127.0.0.1:9090", // Prometheus /metrics and /status
	})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Stop(ctx)
	for ev := range e.Events() {
		switch ev := ev.(type) {
		case engine.Scheduled:
			log.Printf("installing %s at %s", ev.Version, ev.At.Format(time.Kitchen))
		case engine.Refused:
			if ev.What == engine.RefusedChunk {
				log.Printf("peer %s sent a bad chunk: %v", ev.Peer, ev.Reason)
			}
		case engine.Failed:
			if errors.Is(ev.Err, engine.ErrStageStopped) {
				log.Printf("stage %s stopped for good; phase %s", ev.Stage, e.Status().Phase)
			}
		}
	}
}

// Publish signs an artifact, puts the publisher's record in the DHT and
// seeds the release until Stop.
func ExamplePublish() {
	ctx := context.Background()
	key, err := release.ReadSecretKeyFile("publisher.key") // from rpe init
	if err != nil {
		log.Fatal(err)
	}
	p, err := engine.Publish(ctx, engine.PublishConfig{
		Key:       key,
		Artifact:  "hello-1.1.0",
		Version:   "1.1.0",
		App:       "hello",
		StateDir:  "publisher-state", // the same dir seeds the release again after a restart
		Bootstrap: []string{"127.0.0.1:6881"},
	})
	if errors.Is(err, engine.ErrNotNewer) {
		log.Fatal("the record already names this or a newer version")
	} else if err != nil {
		log.Fatal(err)
	}
	defer p.Stop(ctx)
	fmt.Println("seeding", p.Manifest.ID)
}

// Fetch downloads and verifies the newest release without installing it.
func ExampleFetch() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, err := engine.Fetch(ctx, engine.FetchConfig{
		PublisherKey: "15tjxf7sgzrujz3ax3hg8zj9ngsftjek9umhdufqmyobzpgb1qdo",
		App:          "hello",
		Out:          "hello.new",
		Bootstrap:    []string{"127.0.0.1:6881"},
		Wait:         time.Minute, // the release may still be being published
	})
	if errors.Is(err, engine.ErrUnknownApp) {
		log.Fatal("the publisher has no release of hello")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fetched", f.Version, "to", f.Path)
}

// Lookup lists what a publisher's record names, and how many peers serve
// each release.
func ExampleLookup() {
	l, err := engine.Lookup(context.Background(), engine.LookupConfig{
		PublisherKey: "15tjxf7sgzrujz3ax3hg8zj9ngsftjek9umhdufqmyobzpgb1qdo",
		CountPeers:   true,
		Bootstrap:    []string{"127.0.0.1:6881"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range l.Entries {
		fmt.Println(e.Target(), e.Version, e.Peers)
	}
}
