package resolver

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/release"
)

// fakeClock is a clock the test moves by hand; the resolver reads it from
// its own goroutine.
type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// TestStaleWithInjectedClock: a node whose newest record was signed longer
// ago than StaleAfter reports Stale once, with the signing time; a fresh
// record ends it, and a replayed old one does not.
func TestStaleWithInjectedClock(t *testing.T) {
	dht := startDHT(t, 3)
	pub := newPublisher(40)
	clock := newClock(t0)
	r := newRig(t, Config{Node: joinDHT(t, dht), PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"),
		StaleAfter: time.Hour, Now: clock.now})

	p1 := pub.record(t, release.SeqNow(t0), entry(target, "1.1.0"))
	put(t, dht[1], p1)
	clock.add(59 * time.Minute)
	if _, got := r.poll(); len(only[*Stale](got)) != 0 || len(only[*ReleaseFound](got)) != 1 {
		t.Fatalf("lookup of a 59-minute-old record sent %s, want ReleaseFound and no Stale", describe(got))
	}
	clock.add(2 * time.Minute)
	_, got := r.poll()
	st := only[*Stale](got)
	if len(st) != 1 || !st[0].Signed.Equal(t0) || st[0].Age != 61*time.Minute {
		t.Fatalf("lookup of a 61-minute-old record sent %s, want one Stale signed %v age 61m", describe(got), t0)
	}
	if _, got := r.poll(); len(got) != 0 {
		t.Fatalf("second lookup of the same stale record sent %s, want nothing", describe(got))
	}
	// The same old record replayed by a peer is no fresher.
	if got := r.offer(p1, "peer"); len(got) != 0 {
		t.Fatalf("replayed stale record sent %s, want nothing", describe(got))
	}
	// A record the publisher signed now ends it.
	p2, err := release.MergeEntry(pub.sk, p1, entry(target, "1.1.0"), release.SeqNow(clock.now()))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.offer(p2, "peer"); len(only[*Stale](got)) != 0 || len(only[*RecordUpdated](got)) != 1 {
		t.Fatalf("fresh record sent %s, want RecordUpdated and no Stale", describe(got))
	}
	// ...until it too grows old.
	clock.add(2 * time.Hour)
	if _, got := r.poll(); len(only[*Stale](got)) != 1 {
		t.Fatalf("record grown old sent %s, want Stale", describe(got))
	}
}

// TestStaleWithoutAnyRecord: a node that never finds a record reports
// Stale once it has run StaleAfter without one; StaleAfter zero never does.
func TestStaleWithoutAnyRecord(t *testing.T) {
	dht := startDHT(t, 2)
	node := joinDHT(t, dht)
	for _, bound := range []time.Duration{time.Hour, 0} {
		clock := newClock(t0)
		r := newRig(t, Config{Node: node, PublisherKey: newPublisher(41).pub, StaleAfter: bound, Now: clock.now})
		r.sync() // the stage has started, at t0
		clock.add(30 * time.Minute)
		if _, got := r.poll(); len(got) != 0 {
			t.Fatalf("bound %v: empty lookup after 30m sent %s, want nothing", bound, describe(got))
		}
		clock.add(time.Hour)
		_, got := r.poll()
		st := only[*Stale](got)
		if bound == 0 {
			if len(st) != 0 {
				t.Fatalf("StaleAfter 0 sent %s, want nothing", describe(got))
			}
			continue
		}
		if len(st) != 1 || !st[0].Signed.IsZero() || st[0].Age != 90*time.Minute {
			t.Fatalf("empty lookup after 90m sent %s, want one Stale with no signing time, age 90m", describe(got))
		}
	}
}

// TestRefuseExpiredEntry: an entry past its exp= is refused with
// ErrEntryExpired, once; the same entry before its expiry is reported.
func TestRefuseExpiredEntry(t *testing.T) {
	pub := newPublisher(42)
	e := entry(target, "1.1.0")
	e.Expires = t0.Add(time.Hour)
	p := pub.record(t, release.SeqNow(t0), e)

	clock := newClock(t0.Add(59 * time.Minute))
	r := newRig(t, Config{PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"), Now: clock.now})
	got := r.offer(p, "peer")
	if f := only[*ReleaseFound](got); len(f) != 1 || !f[0].Entry.Expires.Equal(e.Expires) {
		t.Fatalf("entry before expiry sent %s, want ReleaseFound with the expiry", describe(got))
	}

	clock = newClock(t0.Add(time.Hour))
	r = newRig(t, Config{PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"), Now: clock.now})
	got = r.offer(p, "peer")
	ref := only[*RecordRefused](got)
	if len(ref) != 1 || !errors.Is(ref[0].Err, ErrEntryExpired) || len(only[*ReleaseFound](got)) != 0 {
		t.Fatalf("expired entry sent %s, want RecordRefused(ErrEntryExpired) only", describe(got))
	}
	if got := r.offer(p, "peer2"); len(got) != 0 {
		t.Fatalf("expired entry offered again sent %s, want nothing", describe(got))
	}
}
