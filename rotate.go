package engine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// RotateConfig configures Rotate. Old and New are required.
type RotateConfig struct {
	// Old is the key being retired, New the key that takes over.
	Old, New ed25519.PrivateKey
	// Bootstrap, listen addresses and Logger are as in Config.
	Bootstrap             []string
	ListenDHT, ListenQUIC string
	Logger                *slog.Logger
	// LookupTimeout bounds the read of Old's current record; default 10s.
	LookupTimeout time.Duration
}

// Rotate moves a publisher from key Old to key New: it signs the rotation
// statement (with both keys), merges it into Old's current record, keeping
// that record's entries for nodes that know nothing of rotations, and puts
// the record in the DHT. A node that trusts Old follows the statement the
// next time it reads Old's record, saves it, and from then on accepts
// records and manifests signed by New only. Publish the releases under New
// (before or after): nodes look New's record up as soon as they rotate.
//
// For a stolen key, rotate first, then revoke: the statement must be
// signed while the key still counts, and a thief who rotates first wins
// the nodes that read the thief's statement first (see docs/SECURITY.md).
func Rotate(ctx context.Context, rc RotateConfig) (*release.Rotation, *release.SignedPacket, error) {
	if rc.Old == nil || rc.New == nil {
		return nil, nil, errors.New("rotate: the old and the new secret key are required")
	}
	if rc.LookupTimeout == 0 {
		rc.LookupTimeout = 10 * time.Second
	}
	h := hooks.From(ctx)
	now := h.Now
	if now == nil {
		now = time.Now
	}
	rot, err := release.SignRotation(rc.Old, rc.New, now())
	if err != nil {
		return nil, nil, fmt.Errorf("rotate: %w", err)
	}
	node, err := network.New(ctx, network.Config{
		DHTConn: h.DHTConn, QUICConn: h.QUICConn,
		ListenDHT: rc.ListenDHT, ListenQUIC: rc.ListenQUIC, Bootstrap: rc.Bootstrap,
		Logger: rc.Logger, QueryResendDelay: h.QueryResendDelay, NoMaintainer: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("rotate: %w", err)
	}
	defer node.Close()
	prev, err := joinAndGet(ctx, node, rot.Old, rc.Bootstrap, rc.LookupTimeout)
	if err != nil && !errors.Is(err, ErrNoRecord) {
		return nil, nil, fmt.Errorf("rotate: read the old key's record: %w", err)
	}
	seq := release.SeqNow(now())
	if prev != nil && seq <= prev.Seq {
		seq = prev.Seq + 1
	}
	pkt, err := release.MergeRotation(rc.Old, prev, rot, seq)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.PutRecord(pctx, pkt); err != nil {
		return nil, nil, fmt.Errorf("rotate: put the old key's record: %w", err)
	}
	return rot, pkt, nil
}
