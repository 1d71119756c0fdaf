package resolver

import (
	"errors"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/release"
)

// TestKeyRotation: a node on the old key follows the rotation statement in
// the old key's record, looks up the new key's record at once and reports
// its release; from then on, and after a restart, records under the old key
// are refused, and a statement back to the old key is not followed.
func TestKeyRotation(t *testing.T) {
	dht := startDHT(t, 3)
	node := joinDHT(t, dht)
	oldPub, newPub := newPublisher(50), newPublisher(51)
	dir := t.TempDir()
	r := newRig(t, Config{Node: node, PublisherKey: oldPub.pub, Current: semver.MustParse("1.0.0"), StateDir: dir})

	p1 := oldPub.record(t, 1000, entry(target, "1.1.0"))
	put(t, dht[1], p1)
	if _, got := r.poll(); len(only[*ReleaseFound](got)) != 1 {
		t.Fatalf("old key's release: %s", describe(got))
	}

	// The publisher rotates: the new key's record names 1.2.0, the old
	// key's carries the statement.
	put(t, dht[2], newPub.record(t, 3000, entry(target, "1.2.0")))
	rot, err := release.SignRotation(oldPub.sk, newPub.sk, time.Unix(2, 0))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := release.MergeRotation(oldPub.sk, p1, rot, 2000)
	if err != nil {
		t.Fatal(err)
	}
	put(t, dht[1], p2)
	_, got := r.poll()
	kr := only[*KeyRotated](got)
	if len(kr) != 1 || kr[0].Old != oldPub.pub || kr[0].New != newPub.pub {
		t.Fatalf("rotation record sent %s, want KeyRotated", describe(got))
	}
	if chain, err := state.Rotations(dir); err != nil || len(chain) != 1 || chain[0].New != newPub.pub {
		t.Fatalf("rotations on disk: %v, %v", chain, err)
	}
	// The lookup of the new key started by the rotation finds 1.2.0.
	_, got = r.nextPoll()
	f := only[*ReleaseFound](got)
	if len(f) != 1 || f[0].Entry.Version.String() != "1.2.0" || f[0].Packet.PublicKey != newPub.pub {
		t.Fatalf("lookup after rotating sent %s, want ReleaseFound 1.2.0 under the new key", describe(got))
	}

	// A release signed by the old key after the rotation is refused.
	late := oldPub.record(t, 9000, entry(target, "9.0.0"))
	if got := r.offer(late, "peer"); len(only[*RecordRefused](got)) != 1 || !errors.Is(only[*RecordRefused](got)[0].Err, ErrWrongKey) || len(only[*ReleaseFound](got)) != 0 {
		t.Fatalf("old key's record after rotating sent %s, want RecordRefused(ErrWrongKey)", describe(got))
	}
	// A statement back to the old key, even signed by the new one, is not
	// followed.
	back, _ := release.SignRotation(newPub.sk, oldPub.sk, time.Unix(3, 0))
	pn, _ := release.MergeRotation(newPub.sk, newPub.record(t, 4000, entry(target, "1.2.0")), back, 5000)
	got = r.offer(pn, "peer")
	if len(only[*KeyRotated](got)) != 0 || len(only[*RecordRefused](got)) != 1 || !errors.Is(only[*RecordRefused](got)[0].Err, release.ErrRotation) {
		t.Fatalf("rotation back to the old key sent %s, want RecordRefused(ErrRotation)", describe(got))
	}

	// Restarted with the old key still configured, it trusts the new one.
	r2 := newRig(t, Config{Node: node, PublisherKey: oldPub.pub, Current: semver.MustParse("1.0.0"), StateDir: dir})
	if got := r2.sync(); len(only[*ReleaseFound](got)) != 1 {
		t.Fatalf("restarted node's held record (new key) sent %s, want its release", describe(got))
	}
	if got := r2.offer(oldPub.record(t, 9500, entry(target, "9.1.0")), "peer"); len(only[*RecordRefused](got)) != 1 || len(only[*ReleaseFound](got)) != 0 {
		t.Fatalf("restarted node took an old-key record: %s", describe(got))
	}
	if got := r2.offer(newPub.record(t, 9600, entry(target, "1.3.0")), "peer"); len(only[*ReleaseFound](got)) != 1 || len(only[*RecordRefused](got)) != 0 {
		t.Fatalf("restarted node refused the new key's record: %s", describe(got))
	}
}

// TestRotationsUnreadableFailsClosed: with a damaged rotations file the node
// trusts no key, not the configured one.
func TestRotationsUnreadableFailsClosed(t *testing.T) {
	pub := newPublisher(52)
	dir := t.TempDir()
	if err := state.WriteAtomic(dir+"/rotations", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, Config{PublisherKey: pub.pub, Current: semver.MustParse("1.0.0"), StateDir: dir})
	got := r.offer(pub.record(t, 1000, entry(target, "1.1.0")), "peer")
	ref := only[*RecordRefused](got)
	if len(ref) != 1 || !errors.Is(ref[0].Err, ErrRotationsUnreadable) || len(only[*ReleaseFound](got)) != 0 {
		t.Fatalf("sent %s, want RecordRefused(ErrRotationsUnreadable)", describe(got))
	}
}

// TestKeyRotationPrivate: a private swarm's node follows a rotation too and
// opens the sealed entry the new key publishes with the same secret.
func TestKeyRotationPrivate(t *testing.T) {
	oldPub, newPub := newPublisher(53), newPublisher(54)
	var sec release.Secret
	sec[0] = 9
	priv, err := release.NewPrivate(sec)
	if err != nil {
		t.Fatal(err)
	}
	node := joinDHT(t, startDHT(t, 2)) // the rotation starts a lookup
	r := newRig(t, Config{Node: node, PublisherKey: oldPub.pub, Current: semver.MustParse("1.0.0"), Private: priv})
	rot, _ := release.SignRotation(oldPub.sk, newPub.sk, time.Unix(2, 0))
	pr, err := release.MergeRotation(oldPub.sk, nil, rot, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.offer(pr, "peer"); len(only[*KeyRotated](got)) != 1 {
		t.Fatalf("rotation sent %s", describe(got))
	}
	pn, err := release.MergeSealedEntry(newPub.sk, nil, entry(target, "1.2.0"), 2000, priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := r.offer(pn, "peer")
	if f := only[*ReleaseFound](got); len(f) != 1 || f[0].Entry.Version.String() != "1.2.0" {
		t.Fatalf("new key's sealed entry sent %s, want ReleaseFound 1.2.0", describe(got))
	}
}
