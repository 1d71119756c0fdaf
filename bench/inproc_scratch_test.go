package bench

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

func BenchmarkScratchInproc(b *testing.B) {
	size := onePeerSize(b)
	dir := b.TempDir()
	artifact := filepath.Join(dir, "artifact")
	writeRandom(b, artifact, size)
	ctx := context.Background()
	boot, _ := network.New(ctx, network.Config{ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true, QueryResendDelay: 200 * time.Millisecond})
	defer boot.Close()
	key, _ := release.GenerateSecretKey(rand.Reader)
	pub := release.PublicKeyOf(key)
	p, err := engine.Publish(ctx, engine.PublishConfig{Key: key, Artifact: artifact, Version: "1.0.0", App: "big",
		StateDir: filepath.Join(dir, "publisher"), Bootstrap: []string{boot.DHTAddr().String()},
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", QueryResendDelay: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop(context.Background())
	go func() {
		for range p.Events() {
		}
	}()
	for b.Loop() {
		_, err := engine.Fetch(ctx, engine.FetchConfig{PublisherKey: pub.String(), App: "big", Out: filepath.Join(dir, "out"),
			Bootstrap: []string{boot.DHTAddr().String()}, ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
	}
}
