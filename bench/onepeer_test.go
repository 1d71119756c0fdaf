package bench

import (
	"context"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// onePeerSize is the release size of BenchmarkOnePeer: RPE_BENCH_SIZE
// ("1GiB" in bench/run.sh), default 128 MiB so that `go test -bench .`
// stays quick.
func onePeerSize(b *testing.B) int64 {
	s := os.Getenv("RPE_BENCH_SIZE")
	if s == "" {
		return 128 << 20
	}
	n, err := units.ParseSize(s)
	if err != nil || n < 1 {
		b.Fatalf("RPE_BENCH_SIZE=%q: %v", s, err)
	}
	return n
}

// BenchmarkOnePeer publishes one release in this process and fetches it
// with `rpe fetch` (the real command, a child process) over loopback; in
// the same iteration a bare quic-go stream moves as many bytes between two
// sockets of this process. It reports the fetch's throughput (process
// start to exit: DHT lookup, manifest, chunks, verification and the
// output file), the bare stream's, their ratio (goal >= 0.6, stretch
// 0.85), and the fetcher's CPU time per GiB (user + system; goal <= 7 s)
// and peak RSS (goal <= 64 MiB), both read from the child's rusage, so the
// publisher's share is not in them.
func BenchmarkOnePeer(b *testing.B) {
	size := onePeerSize(b)
	dir := b.TempDir()
	rpe := buildRPE(b, dir)
	if w := os.Getenv("RPE_BENCH_FETCH_WRAP"); w != "" {
		rpe = w
	}
	artifact := filepath.Join(dir, "artifact")
	writeRandom(b, artifact, size)

	bootAddr, pub, _ := startSeed(b, dir, artifact)

	var fetchTime, quicTime, fetchCPU time.Duration
	var peakRSS int64
	b.SetBytes(2 * size)
	i := 0
	for b.Loop() {
		i++
		out := filepath.Join(dir, "out")
		os.Remove(out)
		cmd := exec.Command(rpe, "fetch", "--pubkey", pub, "--app", "big", "--out", out,
			"--bootstrap", bootAddr, "--quiet")
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("rpe fetch: %v", err)
		}
		fetchTime += time.Since(start)
		fetchCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peakRSS = max(peakRSS, int64(ru.Maxrss)<<10) // kB on Linux
		}
		if fi, err := os.Stat(out); err != nil || fi.Size() != size {
			b.Fatalf("rpe fetch wrote %v, %v; want %d bytes", fi, err, size)
		}
		quicTime += bareQUIC(b, size)
	}
	gib := float64(size) * float64(i) / (1 << 30)
	f, q := gib*1024/fetchTime.Seconds(), gib*1024/quicTime.Seconds()
	b.ReportMetric(f, "fetch-MiB/s")
	b.ReportMetric(q, "quic-MiB/s")
	b.ReportMetric(f/q, "ratio")
	b.ReportMetric(fetchCPU.Seconds()/gib, "fetch-cpu-s/GiB")
	b.ReportMetric(float64(peakRSS)/(1<<20), "fetch-peak-rss-MiB")
}

// buildRPE builds cmd/rpe into dir.
// startSeed starts a DHT bootstrap node and a publisher seeding artifact as
// app "big" on loopback, both stopped when b ends. It returns the bootstrap
// address, the publisher key and the release's chunk count.
func startSeed(b *testing.B, dir, artifact string) (bootAddr, pubkey string, chunks int) {
	ctx := context.Background()
	boot, err := network.New(ctx, network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true,
		QueryResendDelay: 200 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { boot.Close() })
	key, err := release.GenerateSecretKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	p, err := engine.Publish(hooks.With(ctx, &hooks.Hooks{QueryResendDelay: 200 * time.Millisecond}), engine.PublishConfig{
		Key: key, Artifact: artifact, Version: "1.0.0", App: "big",
		StateDir: filepath.Join(dir, "publisher"), Bootstrap: []string{boot.DHTAddr().String()},
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Stop(context.Background()) })
	go func() {
		for range p.Events() {
		}
	}()
	return boot.DHTAddr().String(), release.PublicKeyOf(key).String(), p.Manifest.Manifest.NumChunks()
}

func buildRPE(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "rpe")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/rpe-project/engine/cmd/rpe").CombinedOutput()
	if err != nil {
		b.Fatalf("go build cmd/rpe: %v\n%s", err, out)
	}
	return bin
}

// writeRandom writes size pseudo-random bytes to path, a MiB at a time.
func writeRandom(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, mrand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'}), size); err != nil {
		b.Fatal(err)
	}
}

// bareQUIC moves size bytes over one quic-go stream between two loopback
// sockets, with wire's QUIC configuration and TLS, and returns how long
// it took from the dial to the last byte read.
func bareQUIC(b *testing.B, size int64) time.Duration {
	ctx := context.Background()
	qconf, err := wire.Limits{}.QUICConfig()
	if err != nil {
		b.Fatal(err)
	}
	sa, sb := udp(b), udp(b)
	defer sa.Close()
	defer sb.Close()
	ta, tb := &quic.Transport{Conn: sa}, &quic.Transport{Conn: sb}
	defer ta.Close()
	defer tb.Close()
	ka, _ := release.GenerateSecretKey(rand.Reader)
	kb, _ := release.GenerateSecretKey(rand.Reader)
	st, err := wire.ServerTLS(kb)
	if err != nil {
		b.Fatal(err)
	}
	ct, err := wire.ClientTLS(ka, wire.NodeID{})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := tb.Listen(st, qconf)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			done <- err
			return
		}
		s, err := c.AcceptStream(ctx)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(io.Discard, s)
		c.CloseWithError(0, "")
		done <- err
	}()
	c, err := ta.Dial(ctx, ln.Addr(), ct, qconf)
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		if _, err := s.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func udp(b *testing.B) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	return c
}
