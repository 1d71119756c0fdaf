package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rpe-project/engine/actors/resolver"
	"github.com/rpe-project/engine/release"
)

func isRecordRefusedWrongKey(ev Event) bool {
	r, ok := ev.(Refused)
	return ok && r.What == RefusedRecord && errors.Is(r.Reason, resolver.ErrWrongKey)
}

// TestKeyRotationEndToEnd: nodes configured with the old key follow the
// rotation and install a release signed by the new key; a release signed
// by the old key after the rotation is refused; a node restarted with the
// old key still configured trusts the new key only.
func TestKeyRotationEndToEnd(t *testing.T) {
	boot := testNet(t)
	oldKey, newKey := testKey(t), testKey(t)
	oldPub, newPub := release.PublicKeyOf(oldKey), release.PublicKeyOf(newKey)
	var cfgs []Config
	var nodes []*Engine
	var logs []*eventLog
	for range 2 {
		cfg := testConfig(t, oldPub, boot, "1.0.0")
		e := startEngine(t, cfg)
		cfgs, nodes, logs = append(cfgs, cfg), append(nodes, e), append(logs, collect(e))
	}

	artifact, want := testArtifact(t, 300_000)
	testPublish(t, newKey, boot, artifact, "1.1.0", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := Rotate(testCtx(ctx, nil), RotateConfig{Old: oldKey, New: newKey, Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	for i, e := range nodes {
		ev := logs[i].wait(t, 60*time.Second, "KeyRotated", func(ev Event) bool { _, ok := ev.(KeyRotated); return ok })
		if kr := ev.(KeyRotated); kr.Old != oldPub.String() || kr.New != newPub.String() {
			t.Fatalf("node %d: %+v", i, kr)
		}
		logs[i].wait(t, 60*time.Second, "Installed", isInstalled)
		if got, _ := os.ReadFile(e.cfg.Target); !bytes.Equal(got, want) {
			t.Fatalf("node %d: target is not the release signed by the new key", i)
		}
		if st := e.Status(); st.PublicKey != newPub.String() {
			t.Errorf("node %d: status key %s, want %s", i, st.PublicKey, newPub)
		}
	}

	// The old key signs a newer release after the rotation: refused.
	v9, _ := release.ParseVersion("9.0.0")
	oldRec, err := release.NewSignedPacket(oldKey, []release.Entry{{
		App: "app", Channel: "stable", Platform: release.DefaultPlatform(), Version: v9,
		Size: 10,
	}}, release.SeqNow(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	gossip(t, boot, nodes[0], oldRec)
	logs[0].wait(t, 20*time.Second, "old-key record refused", isRecordRefusedWrongKey)

	// Restarted with the old key still configured: the new key only.
	if err := nodes[1].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := cfgs[1]
	cfg.CurrentVersion = "1.1.0"
	e := startEngine(t, cfg)
	log := collect(e)
	if st := e.Status(); st.PublicKey != newPub.String() {
		t.Fatalf("restarted node trusts %s, want %s", st.PublicKey, newPub)
	}
	gossip(t, boot, e, oldRec)
	log.wait(t, 20*time.Second, "old-key record refused after restart", isRecordRefusedWrongKey)
	if n := log.count(func(ev Event) bool { _, ok := ev.(ReleaseFound); return ok }); n != 0 {
		t.Fatalf("restarted node found %d releases", n)
	}
}
