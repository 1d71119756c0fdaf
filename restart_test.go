package engine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/release"
)

// TestStageRestart panics once inside each of the five stages during an
// update. Each must be restarted by the root's supervisor, the update must
// complete with the published bytes, and no chunk verified before the
// downloader crashed may be fetched again.
func TestStageRestart(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	artifact, want := testArtifact(t, 2<<20)
	cfg := testConfig(t, pub, boot, "1.0.0")

	var (
		mu           sync.Mutex
		fired        = map[string]bool{}
		manifestID   release.ManifestID
		verifiedAtDL []byte // the have bitfield when the downloader crashed
	)
	haveFile := func() []byte {
		mu.Lock()
		id := manifestID
		mu.Unlock()
		b, _ := os.ReadFile(filepath.Join(cfg.StateDir, "releases", id.String(), "have"))
		return b
	}
	fire := func(stage string) {
		mu.Lock()
		if fired[stage] {
			mu.Unlock()
			return
		}
		fired[stage] = true
		mu.Unlock()
		if stage == "downloader" {
			b := haveFile()
			mu.Lock()
			verifiedAtDL = b
			mu.Unlock()
		}
		panic(fmt.Sprintf("injected fault in %s", stage))
	}
	fault := func(stage string, msg any) {
		name := fmt.Sprintf("%T", msg)
		switch {
		case stage == "resolver" && name == "*resolver.pollResult":
		case stage == "verifier" && name == "*verifier.CheckChunk":
		case stage == "swarm" && name == "*swarm.Verified":
		case stage == "downloader" && name == "*verifier.ChunkVerified":
			// Crash only once a few chunks are verified on disk.
			if n := countBits(haveFile()); n < 4 {
				return
			}
		case stage == "installer" && name == "*installer.Install":
		default:
			return
		}
		fire(stage)
	}

	// The publisher is the only source, so its Served events show every
	// chunk fetch the node made.
	p := testPublish(t, key, boot, artifact, "1.1.0", func(pc *PublishConfig) { pc.ChunkSize = 64 << 10 })
	mu.Lock()
	manifestID = p.Manifest.ID
	mu.Unlock()
	plog := collect(p.Engine)

	e := startEngineWith(t, cfg, func(h *hooks.Hooks) { h.Fault = fault })
	log := collect(e)
	log.wait(t, 90*time.Second, "Installed", isInstalled)

	got, err := os.ReadFile(cfg.Target)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("target differs from the published artifact")
	}
	for _, stage := range []Stage{StageResolver, StageSwarm, StageDownloader, StageVerifier, StageInstaller} {
		// The resolver crashes at its first lookup, which may come after
		// the install: the release can arrive through the mesh first.
		log.wait(t, 30*time.Second, fmt.Sprintf("StageRestarted %v", stage), func(ev Event) bool {
			r, ok := ev.(StageRestarted)
			return ok && r.Stage == stage
		})
	}
	mu.Lock()
	before := verifiedAtDL
	mu.Unlock()
	if before == nil {
		t.Fatal("the downloader fault never fired")
	}
	served := map[int]int{}
	plog.mu.Lock()
	for _, ev := range plog.events {
		if s, ok := ev.(Served); ok {
			served[s.Index]++
		}
	}
	plog.mu.Unlock()
	for i := 0; i < p.Manifest.Manifest.NumChunks(); i++ {
		if hasBit(before, i) && served[i] > 1 {
			t.Errorf("chunk %d was verified before the downloader crashed but was fetched %d times", i, served[i])
		}
	}
}

func countBits(b []byte) int {
	n := 0
	for i := range len(b) * 8 {
		if hasBit(b, i) {
			n++
		}
	}
	return n
}

func hasBit(b []byte, i int) bool { return i/8 < len(b) && b[i/8]&(0x80>>(i%8)) != 0 }
