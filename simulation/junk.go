package simulation

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/rpe-project/engine/simulation/netsim"
)

// junkNode is a DHT node that answers with junk, as some nodes of the real
// DHT do: it answers pings, so it stays in routing tables, and every
// lookup (find_node, get_peers, get) with eight nodes that do not exist,
// for get_peers also peers that do not exist, for get a record whose
// signature does not verify, and every fourth answer with bytes that are
// not bencode at all; it accepts every put and announce and keeps nothing.
// Every address it hands out lies in 127.21.0.0/16, where no host of a run
// lives (the packets are dropped), so nothing leaves 127.0.0.0/8.
type junkNode struct {
	conn net.PacketConn
	id   krpc.ID
	rng  *mrand.Rand // only the serving goroutine uses it
	wg   sync.WaitGroup
	done chan struct{}
}

// addJunk starts junk node i on a new host. It makes itself known by
// querying the run's bootstrap nodes and a few plain nodes (a node that
// queries is added to the table, and pinged; it answers pings), again
// every minute.
func (d *dhtPop) addJunk(i int) (*junkNode, error) {
	r := d.r
	h, err := r.net.addHost(netsim.Link{Latency: r.s.Latency, Loss: r.s.Loss})
	if err != nil {
		return nil, fmt.Errorf("simulation: junk DHT host: %w", err)
	}
	d.mu.Lock()
	seed := d.rng.Uint64()
	d.mu.Unlock()
	cs, err := r.listen(h)
	if err != nil {
		return nil, err
	}
	cs[1].Close() // no QUIC
	j := &junkNode{conn: cs[0], rng: mrand.New(mrand.NewPCG(seed, uint64(i))), done: make(chan struct{})}
	rand.Read(j.id[:])
	targets := slices.Concat(d.r.addrs, d.addrs(8))
	j.wg.Go(j.serve)
	j.wg.Go(func() { j.announce(targets) })
	return j, nil
}

// announce sends find_node queries to targets, now and every minute.
func (j *junkNode) announce(targets []string) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		for k, a := range targets {
			ua, err := net.ResolveUDPAddr("udp", a)
			if err != nil {
				continue
			}
			b, err := bencode.Marshal(krpc.Msg{Y: "q", Q: "find_node", T: fmt.Sprint("j", k),
				A: &krpc.MsgArgs{ID: j.id, Target: j.id}})
			if err == nil {
				j.conn.WriteTo(b, ua)
			}
		}
		select {
		case <-t.C:
		case <-j.done:
			return
		}
	}
}

// serve answers every query with junk until the conn closes.
func (j *junkNode) serve() {
	buf := make([]byte, 2048)
	for n := 0; ; n++ {
		k, from, err := j.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var m krpc.Msg
		if bencode.Unmarshal(buf[:k], &m) != nil || m.Y != "q" || m.A == nil {
			continue
		}
		if out := j.answer(&m, n); out != nil {
			j.conn.WriteTo(out, from)
		}
	}
}

// answer builds the junk answer to query m, the n-th received.
func (j *junkNode) answer(m *krpc.Msg, n int) []byte {
	if m.Q != "ping" && n%4 == 3 {
		// Not bencode: the answer's transaction is never completed.
		garbage := make([]byte, 20+j.rng.IntN(200))
		rand.Read(garbage)
		garbage[0] = 'd'
		return garbage
	}
	r := &krpc.Return{ID: j.id}
	switch m.Q {
	case "find_node", "get_peers", "get":
		for range 8 {
			var ni krpc.NodeInfo
			rand.Read(ni.ID[:])
			ap := junkAddr(j.rng)
			ni.Addr = krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
			r.Nodes = append(r.Nodes, ni)
		}
		token := fmt.Sprint("junk", j.rng.Uint32())
		r.Token = &token
	}
	switch m.Q {
	case "get_peers":
		for range 8 {
			ap := junkAddr(j.rng)
			r.Values = append(r.Values, krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())})
		}
	case "get":
		// A record under the key asked for would need the key, which a
		// target (its hash) does not give: any key, a bad signature.
		v, _ := bencode.Marshal([]byte("junk record"))
		seq := int64(1) << 62
		r.V = v
		r.Seq = &seq
		rand.Read(r.K[:])
		rand.Read(r.Sig[:])
	}
	b, err := bencode.Marshal(krpc.Msg{Y: "r", T: m.T, R: r})
	if err != nil {
		return nil
	}
	return b
}

func (j *junkNode) close() {
	close(j.done)
	j.conn.Close()
	j.wg.Wait()
}
