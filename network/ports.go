package network

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The port file keeps the ports a node listened on, so that a restarted node
// listens on the same ones when it can. Its announced QUIC address then stays
// true across restarts (peers and DHT nodes that hold it are not left with a
// dead entry for each restart), and the DHT nodes that hold its DHT address
// still reach it. Format: one "dht PORT" and one "quic PORT" line.

// readPorts returns the ports saved in path, 0 for each one missing.
func readPorts(path string) (dht, quic int) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 256 {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			continue
		}
		switch name {
		case "dht":
			dht = int(p)
		case "quic":
			quic = int(p)
		}
	}
	return dht, quic
}

// writePorts saves the ports to path, atomically (temporary file, rename).
func writePorts(path string, dht, quic int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "dht %d\nquic %d\n", dht, quic); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// listenReusing listens on addr; when addr asks for any port (0) and saved
// is a port, it tries saved first.
func listenReusing(ctx context.Context, addr string, saved int) (net.PacketConn, error) {
	var lc net.ListenConfig
	if host, port, err := net.SplitHostPort(addr); err == nil && port == "0" && saved > 0 {
		if c, err := lc.ListenPacket(ctx, "udp", net.JoinHostPort(host, strconv.Itoa(saved))); err == nil {
			return c, nil
		}
	}
	return lc.ListenPacket(ctx, "udp", addr)
}
