package delta

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/rpe-project/engine/release"
)

// TestHelloBuilds measures what a node reuses between two real builds of
// examples/hello: 1.0.0, and 1.0.1 built from the same source with one
// line changed (go build -overlay). Each change is tried with fixed-size
// and content-defined chunks. It runs only with RPE_DELTA_HELLO=1 (it
// builds the program, which takes a while); docs/BENCHMARKS.md has the
// figures.
func TestHelloBuilds(t *testing.T) {
	if os.Getenv("RPE_DELTA_HELLO") == "" {
		t.Skip("set RPE_DELTA_HELLO=1 to build examples/hello twice and measure reuse")
	}
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "examples", "hello", "main.go")
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	const line = `fmt.Printf("hello %s\n", version)`
	if !bytes.Contains(orig, []byte(line)) {
		t.Fatalf("examples/hello/main.go no longer has the line %s", line)
	}
	dir := t.TempDir()
	build := func(name, version string, body []byte) string {
		out := filepath.Join(dir, name)
		args := []string{"build", "-ldflags", "-X main.version=" + version, "-o", out}
		if body != nil {
			changed := filepath.Join(dir, name+".go")
			if err := os.WriteFile(changed, body, 0o644); err != nil {
				t.Fatal(err)
			}
			ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{src: changed}})
			overlay := filepath.Join(dir, name+".json")
			if err := os.WriteFile(overlay, ov, 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-overlay", overlay)
		}
		cmd := exec.Command("go", append(args, "./examples/hello")...)
		cmd.Dir = filepath.Join(filepath.Dir(src), "..", "..")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		return out
	}
	old := build("hello-1.0.0", "1.0.0", nil)
	changes := []struct{ name, to string }{
		{"edit a line (same length of code)", `fmt.Printf("hello, %s\n", version)`},
		{"add a line", line + "\n\tfmt.Println(\"one more line\")"},
	}
	for i, c := range changes {
		nw := build("hello-1.0.1-"+string(rune('a'+i)), "1.0.1", bytes.Replace(orig, []byte(line), []byte(c.to), 1))
		for _, o := range []release.BuildOptions{
			{ChunkSize: 256 << 10}, {ChunkSize: 64 << 10}, {ChunkSize: 16 << 10},
			{Chunker: release.ChunkContent},
			{Chunker: release.ChunkContent, ChunkSize: 64 << 10, AverageBits: 14},
		} {
			data, err := os.ReadFile(nw)
			if err != nil {
				t.Fatal(err)
			}
			rel := newRelease(t, data, o)
			res, err := Reuse(rel, old)
			if err != nil {
				t.Fatal(err)
			}
			m := rel.Manifest().Manifest
			how := "fixed " + sizeStr(m.ChunkSize)
			if m.ContentDefined() {
				how = "content " + sizeStr(m.MinChunk) + "–" + sizeStr(m.ChunkSize) + ", avg 2^" + strconv.Itoa(int(m.AverageBits))
			}
			t.Logf("%-36s %-28s %4d chunks  reused %4d  %9d of %9d bytes (%4.1f%%)  download %9d",
				c.name, how, m.NumChunks(), len(res.Chunks), res.Bytes, m.Size, 100*float64(res.Bytes)/float64(m.Size), m.Size-res.Bytes)
		}
	}
}

func sizeStr(n int) string { return strconv.Itoa(n>>10) + "KiB" }
