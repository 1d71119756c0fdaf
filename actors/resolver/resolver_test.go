package resolver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// TestOfferNewerOnce: a record naming a newer version is reported once, not
// again on the next lookup nor for a re-signed record naming the same
// release; a still newer version is reported in turn.
func TestOfferNewerOnce(t *testing.T) {
	dht := startDHT(t, 4)
	pub := newPublisher(1)
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0")})

	p1 := pub.record(t, 1000, entry(target, "1.1.0"))
	put(t, dht[1], p1)
	pr, got := r.poll()
	if pr.p == nil || pr.p.Seq != 1000 {
		t.Fatalf("lookup found %+v (err %v), want seq 1000", pr.p, pr.err)
	}
	found := only[*ReleaseFound](got)
	if len(found) != 1 || len(only[*RecordUpdated](got)) != 1 || len(got) != 2 {
		t.Fatalf("first lookup sent %s, want RecordUpdated and ReleaseFound", describe(got))
	}
	if f := found[0]; f.Entry.Version.String() != "1.1.0" || f.Entry.ManifestID != manifestID(target, "1.1.0") || f.Packet.Seq != 1000 {
		t.Fatalf("ReleaseFound %s %s seq %d, want 1.1.0 of seq 1000", f.Entry.Version, f.Entry.ManifestID.Short(), f.Packet.Seq)
	}
	if held, err := state.Record(r.cfg.StateDir); err != nil || held == nil || held.Seq != 1000 {
		t.Fatalf("record held on disk: %v, %v; want seq 1000", held, err)
	}

	if _, got := r.poll(); len(got) != 0 {
		t.Fatalf("second lookup of the same record sent %s, want nothing", describe(got))
	}

	// The publisher adds another platform: a newer record, the same
	// release for this node.
	p2, err := release.MergeEntry(pub.sk, p1, entry(release.Target{App: "myapp", Channel: "stable", Platform: "darwin-arm64"}, "1.1.0"), 2000)
	if err != nil {
		t.Fatal(err)
	}
	put(t, dht[2], p2)
	_, got = r.poll()
	if len(got) != 1 || len(only[*RecordUpdated](got)) != 1 {
		t.Fatalf("re-signed record sent %s, want RecordUpdated only", describe(got))
	}

	p3, err := release.MergeEntry(pub.sk, p2, entry(target, "1.2.0"), 3000)
	if err != nil {
		t.Fatal(err)
	}
	put(t, dht[3], p3)
	_, got = r.poll()
	found = only[*ReleaseFound](got)
	if len(found) != 1 || found[0].Entry.Version.String() != "1.2.0" || found[0].Packet.Seq != 3000 {
		t.Fatalf("record naming 1.2.0 sent %s, want ReleaseFound 1.2.0", describe(got))
	}
	if _, got := r.poll(); len(got) != 0 {
		t.Fatalf("lookup after 1.2.0 sent %s, want nothing", describe(got))
	}

	// The same record gossiped by a peer changes nothing either.
	if got := r.offer(p3, "peer"); len(got) != 0 {
		t.Fatalf("gossip of the held record sent %s, want nothing", describe(got))
	}
}

// TestNoOfferOlderOrEqual: a record naming the running version or an older
// one is held (and gossiped) but no release is reported, and nothing is
// refused: it is not an error.
func TestNoOfferOlderOrEqual(t *testing.T) {
	dht := startDHT(t, 3)
	node := joinDHT(t, dht)
	for i, v := range []string{"1.1.0", "1.0.9", "1.1.0-rc.1", "0.1.0"} {
		t.Run(v, func(t *testing.T) {
			pub := newPublisher(byte(10 + i))
			r := newRig(t, Config{Node: node, PublisherKey: pub.pub, Current: semver.MustParse("1.1.0")})
			put(t, dht[1], pub.record(t, 1000, entry(target, v)))
			pr, got := r.poll()
			if pr.p == nil {
				t.Fatalf("lookup found nothing: %v", pr.err)
			}
			if len(got) != 1 || len(only[*RecordUpdated](got)) != 1 {
				t.Fatalf("record naming %s to a node running 1.1.0 sent %s, want RecordUpdated only", v, describe(got))
			}
			if _, got := r.poll(); len(got) != 0 {
				t.Fatalf("second lookup sent %s, want nothing", describe(got))
			}
		})
	}
}

// TestRefuseForeignOrForged: gossip signed by another key, carrying the
// publisher key with someone else's signature, or altered after signing is
// refused with the matching error and a log line, reports nothing, and
// does not replace the held record.
func TestRefuseForeignOrForged(t *testing.T) {
	dht := startDHT(t, 2)
	pub := newPublisher(2)
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0")})

	foreign := newPublisher(3).record(t, 5000, entry(target, "2.0.0"))
	forged := *foreign
	forged.PublicKey = pub.pub
	altered := *pub.record(t, 5000, entry(target, "2.0.0"))
	altered.Packet = append([]byte(nil), altered.Packet...)
	altered.Packet[len(altered.Packet)-1] ^= 1

	for _, c := range []struct {
		name string
		p    *release.SignedPacket
		want error
	}{
		{"foreign", foreign, ErrWrongKey},
		{"forged", &forged, release.ErrBadSignature},
		{"altered", &altered, release.ErrBadSignature},
	} {
		got := r.offer(c.p, "peer-"+c.name)
		refused := only[*RecordRefused](got)
		if len(got) != 1 || len(refused) != 1 {
			t.Fatalf("%s record sent %s, want one RecordRefused", c.name, describe(got))
		}
		if refused[0].From != "peer-"+c.name || !errors.Is(refused[0].Err, c.want) {
			t.Errorf("%s record refused from %q with %v, want from peer-%s with %v", c.name, refused[0].From, refused[0].Err, c.name, c.want)
		}
		if !r.logs.has("record refused", "from=peer-"+c.name) {
			t.Errorf("%s record: no log line says it was refused", c.name)
		}
	}
	if held, err := state.Record(r.cfg.StateDir); err != nil || held != nil {
		t.Fatalf("a refused record was saved: %v, %v", held, err)
	}
}

// TestRefuseReplayedGossip: once a record is held, an older one (genuine,
// replayed by a peer) is refused with ErrOlderSeq even when it names a
// higher version, and the held record stays.
func TestRefuseReplayedGossip(t *testing.T) {
	dht := startDHT(t, 2)
	pub := newPublisher(4)
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0")})

	old := pub.record(t, 1000, entry(target, "1.5.0")) // later withdrawn
	cur := pub.record(t, 2000, entry(target, "1.1.0"))
	got := r.offer(cur, "peer-a")
	if len(only[*ReleaseFound](got)) != 1 {
		t.Fatalf("current record sent %s, want ReleaseFound 1.1.0", describe(got))
	}
	got = r.offer(old, "peer-b")
	refused := only[*RecordRefused](got)
	if len(got) != 1 || len(refused) != 1 || !errors.Is(refused[0].Err, ErrOlderSeq) || refused[0].From != "peer-b" {
		t.Fatalf("replayed record sent %s, want RecordRefused(peer-b: ErrOlderSeq)", describe(got))
	}
	if !r.logs.has("record refused", "from=peer-b", "seq 1000 < 2000") {
		t.Error("no log line says the replayed record was refused")
	}
	if held, err := state.Record(r.cfg.StateDir); err != nil || held == nil || held.Seq != 2000 {
		t.Fatalf("held record %v, %v; want seq 2000", held, err)
	}
}

// TestOlderRecordInDHT: the resolver holds a newer record (on disk) than
// the DHT serves; the DHT's older one, though it names a higher version,
// reports nothing, and the resolver puts its own back so the DHT catches up.
func TestOlderRecordInDHT(t *testing.T) {
	dht := startDHT(t, 4)
	pub := newPublisher(5)
	dir := heldDir(t, pub.record(t, 2000, entry(target, "1.1.0")))
	put(t, dht[1], pub.record(t, 1000, entry(target, "1.5.0")))

	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"), StateDir: dir})
	got := r.sync()
	// The held record is gossiped at start (RecordUpdated), then acted on.
	if f, u := only[*ReleaseFound](got), only[*RecordUpdated](got); len(got) != 2 || len(f) != 1 || f[0].Entry.Version.String() != "1.1.0" ||
		len(u) != 1 || u[0].Packet.Seq != 2000 {
		t.Fatalf("start with a held record sent %s, want RecordUpdated seq 2000 and ReleaseFound 1.1.0", describe(got))
	}

	pr, got := r.poll()
	if pr.p == nil || pr.p.Seq != 1000 {
		t.Fatalf("lookup found %v (err %v), want the older seq 1000", pr.p, pr.err)
	}
	if len(got) != 0 {
		t.Fatalf("older record from the DHT sent %s, want nothing", describe(got))
	}
	if !r.logs.has("older record", "seq 1000 < 2000") {
		t.Error("no log line says the DHT served an older record")
	}

	// The re-put runs in the background; wait until another node sees it.
	waitRecord(t, dht[3], pub.pub, 2000)
	if _, got := r.poll(); len(got) != 0 {
		t.Fatalf("lookup of the held record sent %s, want nothing", describe(got))
	}
}

// waitRecord looks pub's record up through n until it has seq want.
func waitRecord(t *testing.T, n *network.Node, pub release.PublicKey, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		p, _, err := n.GetRecord(ctx, pub)
		cancel()
		if p != nil && p.Seq == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the DHT serves %v (err %v), want seq %d", p, err, want)
		}
	}
}

// TestRePutHeldRecord: a record held on disk that the DHT has lost is put
// back after a lookup finds nothing.
func TestRePutHeldRecord(t *testing.T) {
	dht := startDHT(t, 3)
	pub := newPublisher(6)
	dir := heldDir(t, pub.record(t, 1000, entry(target, "1.0.0")))
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"), StateDir: dir})
	if got := r.sync(); len(only[*RecordUpdated](got)) != 1 || len(got) != 1 {
		t.Fatalf("start with a held record sent %s, want RecordUpdated (to gossip it)", describe(got))
	}
	pr, got := r.poll()
	if pr.p != nil || !errors.Is(pr.err, network.ErrNotFound) {
		t.Fatalf("lookup in an empty DHT: %v, %v; want ErrNotFound", pr.p, pr.err)
	}
	if len(got) != 0 {
		t.Fatalf("lookup sent %s, want nothing", describe(got))
	}
	waitRecord(t, dht[2], pub.pub, 1000)
}

// TestVersionFloor: a release below the highest version ever accepted is
// refused with ErrBelowFloor, one equal to it is reported, and Accepted
// never lowers the floor.
func TestVersionFloor(t *testing.T) {
	dht := startDHT(t, 3)
	pub := newPublisher(7)
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0")})

	r.send(&Accepted{Version: semver.MustParse("2.0.0")})
	r.send(&Accepted{Version: semver.MustParse("1.2.0")}) // never lowers it
	put(t, dht[1], pub.record(t, 1000, entry(target, "1.5.0")))
	_, got := r.poll()
	refused := only[*RecordRefused](got)
	if len(only[*ReleaseFound](got)) != 0 || len(refused) != 1 || !errors.Is(refused[0].Err, ErrBelowFloor) {
		t.Fatalf("record naming 1.5.0 above a floor of 2.0.0 sent %s, want RecordRefused(ErrBelowFloor)", describe(got))
	}
	if !r.logs.has("record refused", "1.5.0 < 2.0.0") {
		t.Error("no log line says 1.5.0 is below the floor")
	}
	if b, err := os.ReadFile(filepath.Join(r.cfg.StateDir, "highest")); err != nil || string(b) != "2.0.0\n" {
		t.Fatalf("floor file %q, %v; want 2.0.0", b, err)
	}

	put(t, dht[2], pub.record(t, 2000, entry(target, "2.0.0")))
	_, got = r.poll()
	if f := only[*ReleaseFound](got); len(f) != 1 || f[0].Entry.Version.String() != "2.0.0" {
		t.Fatalf("record naming the floor version sent %s, want ReleaseFound 2.0.0", describe(got))
	}
}

// TestFloorUnreadableFailsClosed: when the floor cannot be read, a newer
// release is refused rather than reported; once the floor reads again, it
// is reported.
func TestFloorUnreadableFailsClosed(t *testing.T) {
	dht := startDHT(t, 3)
	node := joinDHT(t, dht)
	for i, c := range []struct {
		name  string
		spoil func(path string) error
	}{
		{"malformed", func(p string) error { return os.WriteFile(p, []byte("not a version\n"), 0o644) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			pub := newPublisher(byte(20 + i))
			dir := t.TempDir()
			floor := filepath.Join(dir, "highest")
			if err := c.spoil(floor); err != nil {
				t.Fatal(err)
			}
			r := newRig(t, Config{Node: node, PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"), StateDir: dir})
			put(t, dht[1], pub.record(t, 1000, entry(target, "1.1.0")))
			_, got := r.poll()
			refused := only[*RecordRefused](got)
			if len(only[*ReleaseFound](got)) != 0 || len(refused) != 1 {
				t.Fatalf("with an unreadable floor the lookup sent %s, want one RecordRefused", describe(got))
			}
			if err := refused[0].Err; errors.Is(err, ErrBelowFloor) || !errors.Is(err, ErrFloorUnreadable) {
				t.Errorf("refused with %v, want ErrFloorUnreadable", err)
			}
			if !r.logs.has("record refused", "version floor") {
				t.Error("no log line says the floor is unreadable")
			}

			if err := os.RemoveAll(floor); err != nil {
				t.Fatal(err)
			}
			if err := state.RaiseHighest(dir, semver.MustParse("1.0.0")); err != nil {
				t.Fatal(err)
			}
			_, got = r.poll()
			if f := only[*ReleaseFound](got); len(f) != 1 || f[0].Entry.Version.String() != "1.1.0" {
				t.Fatalf("with the floor readable again the lookup sent %s, want ReleaseFound 1.1.0", describe(got))
			}
		})
	}
}

// TestPollTimer: with no Poll message, the first lookup runs after
// FirstPoll and later ones every PollInterval (jittered).
func TestPollTimer(t *testing.T) {
	dht := startDHT(t, 2)
	pub := newPublisher(8)
	put(t, dht[1], pub.record(t, 1000, entry(target, "1.1.0")))
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"),
		FirstPoll: time.Millisecond, PollInterval: 20 * time.Millisecond})
	_, got := r.nextPoll()
	if f := only[*ReleaseFound](got); len(f) != 1 {
		t.Fatalf("first timed lookup sent %s, want ReleaseFound", describe(got))
	}
	for range 3 {
		if _, got := r.nextPoll(); len(got) != 0 {
			t.Fatalf("later timed lookup sent %s, want nothing", describe(got))
		}
	}
}

// TestRefuseOtherTarget: a genuine, newer record with entries for other
// apps, channels or platforms only reports no release; it is refused with
// release.ErrNoEntry and a log line.
func TestRefuseOtherTarget(t *testing.T) {
	dht := startDHT(t, 3)
	node := joinDHT(t, dht)
	for i, tg := range []release.Target{
		{App: "otherapp", Channel: "stable", Platform: "linux-amd64"},
		{App: "myapp", Channel: "beta", Platform: "linux-amd64"},
		{App: "myapp", Channel: "stable", Platform: "linux-arm64"},
	} {
		t.Run(tg.String(), func(t *testing.T) {
			pub := newPublisher(byte(30 + i))
			r := newRig(t, Config{Node: node, PublisherKey: pub.pub, Current: semver.MustParse("1.0.0")})
			put(t, dht[1], pub.record(t, 1000, entry(tg, "2.0.0")))
			_, got := r.poll()
			refused := only[*RecordRefused](got)
			if len(only[*ReleaseFound](got)) != 0 || len(refused) != 1 || !errors.Is(refused[0].Err, release.ErrNoEntry) {
				t.Fatalf("record for %s only sent %s, want RecordRefused(ErrNoEntry)", tg, describe(got))
			}
			if refused[0].From != "dht" {
				t.Errorf("refusal from %q, want dht", refused[0].From)
			}
			if !r.logs.has("record refused", "from=dht", target.String()) {
				t.Error("no log line says the record has no entry for this target")
			}
			if _, got := r.poll(); len(got) != 0 {
				t.Fatalf("second lookup sent %s, want nothing", describe(got))
			}
		})
	}
}

// TestRefuseMalformedEntry: a genuine, newer record whose entry for this
// target breaks the format reports no release; it is refused with
// release.ErrMalformed and a log line, from the DHT and from gossip alike.
func TestRefuseMalformedEntry(t *testing.T) {
	dht := startDHT(t, 3)
	node := joinDHT(t, dht)
	name := "linux-amd64.stable.myapp._rpe"
	id := manifestID(target, "2.0.0").String()
	for i, c := range []struct{ name, label, value string }{
		{"version", name, "v=banana id=" + id + " size=4096"},
		{"id", name, "v=2.0.0 id=xyz size=4096"},
		{"size", name, "v=2.0.0 id=" + id + " size=-1"},
		{"missing", name, "v=2.0.0 id=" + id},
		{"not key=value", name, "v=2.0.0 id=" + id + " size=4096 junk"},
		{"twice", name, "v=2.0.0 v=3.0.0 id=" + id + " size=4096"},
		{"labels", "extra." + name, "v=2.0.0 id=" + id + " size=4096"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pub := newPublisher(byte(40 + i))
			r := newRig(t, Config{Node: node, PublisherKey: pub.pub, Current: semver.MustParse("1.0.0")})
			p := pub.rawRecord(t, 1000, c.label, c.value)
			put(t, dht[1], p)
			_, got := r.poll()
			refused := only[*RecordRefused](got)
			if len(only[*ReleaseFound](got)) != 0 || len(refused) != 1 || !errors.Is(refused[0].Err, release.ErrMalformed) {
				t.Fatalf("malformed entry %q sent %s, want RecordRefused(ErrMalformed)", c.value, describe(got))
			}
			if !r.logs.has("record refused", "from=dht", "malformed") {
				t.Error("no log line says the record is malformed")
			}

			// The same kind of record gossiped by a peer.
			got = r.offer(pub.rawRecord(t, 2000, c.label, c.value), "peer")
			refused = only[*RecordRefused](got)
			if len(only[*ReleaseFound](got)) != 0 || len(refused) != 1 || !errors.Is(refused[0].Err, release.ErrMalformed) || refused[0].From != "peer" {
				t.Fatalf("gossiped malformed entry %q sent %s, want RecordRefused(peer: ErrMalformed)", c.value, describe(got))
			}
		})
	}
}

// TestRefusalNotRepeated: a genuine record that is refused for what it says
// (below the floor, malformed) is refused once, not again at every lookup
// or when a peer gossips the same record; a newer record is judged afresh.
func TestRefusalNotRepeated(t *testing.T) {
	dht := startDHT(t, 3)
	pub := newPublisher(9)
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0")})
	r.send(&Accepted{Version: semver.MustParse("2.0.0")})

	p1 := pub.record(t, 1000, entry(target, "1.5.0"))
	put(t, dht[1], p1)
	if _, got := r.poll(); len(only[*RecordRefused](got)) != 1 {
		t.Fatalf("record below the floor sent %s, want RecordRefused", describe(got))
	}
	if _, got := r.poll(); len(got) != 0 {
		t.Fatalf("second lookup of the refused record sent %s, want nothing", describe(got))
	}
	if got := r.offer(p1, "peer"); len(got) != 0 {
		t.Fatalf("gossip of the refused record sent %s, want nothing", describe(got))
	}

	p2 := pub.rawRecord(t, 2000, "linux-amd64.stable.myapp._rpe", "v=banana")
	put(t, dht[2], p2)
	_, got := r.poll()
	if refused := only[*RecordRefused](got); len(refused) != 1 || !errors.Is(refused[0].Err, release.ErrMalformed) {
		t.Fatalf("newer malformed record sent %s, want RecordRefused(ErrMalformed)", describe(got))
	}
	if _, got := r.poll(); len(got) != 0 {
		t.Fatalf("second lookup of the malformed record sent %s, want nothing", describe(got))
	}
}

// TestRebootstrapAfterEmptyLookups: every third lookup in a row that finds
// no record makes the resolver bootstrap its DHT node again, and it says so.
func TestRebootstrapAfterEmptyLookups(t *testing.T) {
	dht := startDHT(t, 3)
	node := joinDHT(t, dht)
	r := newRig(t, Config{Node: node, PublisherKey: newPublisher(50).pub})
	for i := 1; i <= 6; i++ {
		pr, got := r.poll()
		if pr.p != nil || !errors.Is(pr.err, network.ErrNotFound) {
			t.Fatalf("lookup %d: %v, %v; want ErrNotFound", i, pr.p, pr.err)
		}
		if i%3 != 0 {
			if len(got) != 0 {
				t.Fatalf("lookup %d sent %s, want nothing", i, describe(got))
			}
			continue
		}
		// The bootstrap runs in the background: its report may come
		// before the barrier or after it.
		rbs := only[*Rebootstrapped](got)
		if len(rbs) != len(got) || len(rbs) > 1 {
			t.Fatalf("lookup %d sent %s, want at most Rebootstrapped", i, describe(got))
		}
		if len(rbs) == 0 {
			rbs = append(rbs, r.waitMsg("Rebootstrapped", func(m any) bool { _, ok := m.(*Rebootstrapped); return ok }).(*Rebootstrapped))
		}
		if rb := rbs[0]; rb.Misses != i || rb.Err != nil {
			t.Fatalf("after lookup %d: Rebootstrapped after %d misses, err %v; want %d, nil", i, rb.Misses, rb.Err, i)
		}
	}
	if node.TableSize() == 0 {
		t.Fatal("routing table empty after re-bootstrap")
	}
}

// TestNegativeIntervals: a negative interval means the default, as zero
// does; it must not crash the resolver when the next lookup is scheduled.
func TestNegativeIntervals(t *testing.T) {
	dht := startDHT(t, 2)
	pub := newPublisher(51)
	put(t, dht[1], pub.record(t, 1000, entry(target, "1.1.0")))
	// The first lookup comes from the timer, so the next one is scheduled
	// with PollInterval.
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"),
		FirstPoll: time.Millisecond, PollInterval: -time.Second, RePutInterval: -time.Second})
	_, got := r.nextPoll()
	select {
	case why := <-r.crashes:
		t.Fatalf("scheduling the next lookup crashed the resolver: %v", why)
	default:
	}
	if len(only[*ReleaseFound](got)) != 1 {
		t.Fatalf("first lookup sent %s, want ReleaseFound", describe(got))
	}
	cfg := Config{FirstPoll: -1, PollInterval: -1, RePutInterval: -1}
	cfg.populate()
	if cfg.FirstPoll != time.Second || cfg.PollInterval != 5*time.Minute || cfg.RePutInterval != 30*time.Minute {
		t.Fatalf("negative intervals became %v, %v, %v; want the defaults", cfg.FirstPoll, cfg.PollInterval, cfg.RePutInterval)
	}
}

// TestRestartKeepsRecordAndFloor: a resolver that panics is restarted by its
// parent and reloads the held record and the floor from disk, so a replayed
// older record and a release below the floor are still refused.
func TestRestartKeepsRecordAndFloor(t *testing.T) {
	dht := startDHT(t, 2)
	pub := newPublisher(52)
	var crashed atomic.Bool
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"),
		FaultHook: func(msg any) {
			if o, ok := msg.(*Offer); ok && o.From == "crash" && crashed.CompareAndSwap(false, true) {
				panic("injected fault")
			}
		}})
	if got := r.offer(pub.record(t, 2000, entry(target, "1.1.0")), "peer-a"); len(only[*ReleaseFound](got)) != 1 {
		t.Fatalf("record naming 1.1.0 sent %s, want ReleaseFound", describe(got))
	}
	r.send(&Accepted{Version: semver.MustParse("1.1.0")})
	r.send(&Offer{Packet: pub.record(t, 2500, entry(target, "1.1.0")), From: "crash"})
	select {
	case <-r.crashes:
	case <-time.After(waitFor):
		t.Fatal("the injected fault did not crash the resolver")
	}
	// The restarted resolver reports the held release again (it keeps no
	// record of what it reported; the parent does).
	r.sync()

	got := r.offer(pub.record(t, 1000, entry(target, "1.5.0")), "peer-b")
	if refused := only[*RecordRefused](got); len(got) != 1 || len(refused) != 1 || !errors.Is(refused[0].Err, ErrOlderSeq) {
		t.Fatalf("after a restart a replayed record sent %s, want RecordRefused(ErrOlderSeq)", describe(got))
	}
	got = r.offer(pub.record(t, 3000, entry(target, "1.0.5")), "peer-c")
	if refused := only[*RecordRefused](got); len(only[*ReleaseFound](got)) != 0 || len(refused) != 1 || !errors.Is(refused[0].Err, ErrBelowFloor) {
		t.Fatalf("after a restart a record below the floor sent %s, want RecordRefused(ErrBelowFloor)", describe(got))
	}
}

// TestNoGoroutineLeft: stopping the resolver (with timed lookups and a
// re-bootstrap possibly in flight) and its node leaves no goroutine behind.
// The held record on disk is another publisher's: it is ignored.
func TestNoGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("run", func(t *testing.T) {
		dht := startDHT(t, 3)
		dir := heldDir(t, newPublisher(53).record(t, 1000, entry(target, "1.0.0")))
		r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: newPublisher(54).pub, StateDir: dir,
			FirstPoll: time.Millisecond, PollInterval: 5 * time.Millisecond})
		r.waitMsg("Rebootstrapped", func(m any) bool { _, ok := m.(*Rebootstrapped); return ok })
		r.nextPoll()
	})
	deadline := time.Now().Add(waitFor)
	for {
		now := runtime.NumGoroutine()
		if now <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, %d before:\n%s", now, before, buf)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
}

// TestBackoff: the interval doubles with each quiet lookup, up to four
// times PollInterval.
func TestBackoff(t *testing.T) {
	d := 2 * time.Second
	for quiet, want := range []time.Duration{d, 2 * d, 4 * d, 4 * d, 4 * d} {
		if got := backoff(d, quiet); got != want {
			t.Errorf("backoff(%v, %d) = %v, want %v", d, quiet, got, want)
		}
	}
	if got := backoff(d, -1); got != d {
		t.Errorf("backoff(%v, -1) = %v, want %v", d, got, d)
	}
}
