package resolver

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/release"
)

// ErrEntryExpired means the record's entry for this target carries an
// expiry (exp=) that has passed: the publisher no longer vouches for it.
var ErrEntryExpired = errors.New("record entry expired")

// Stale reports that this node has seen no fresh record for longer than
// Config.StaleAfter: the newest record it holds was signed at Signed, Age
// ago (or it holds none, and has run Age without finding one, Signed being
// zero). A dead publisher looks like this, and so does an eclipse: DHT nodes
// and peers that hide every newer record. It is sent once per held record;
// a newer record that is still stale is reported again.
type Stale struct {
	Signed time.Time
	Age    time.Duration
}

// now is the resolver's clock.
func (r *resolverActor) now() time.Time { return r.cfg.Now() }

// expired refuses an entry whose expiry has passed.
func (r *resolverActor) expired(ctx actor.Context, p *release.SignedPacket, e release.Entry, from string) bool {
	if !e.Expired(r.now()) {
		return false
	}
	r.refuseEntry(ctx, p, from, fmt.Errorf("%w: %s %s expired at %s", ErrEntryExpired, e.Target(), e.Version, e.Expires.UTC().Format(time.RFC3339)))
	return true
}

// checkStale sends Stale when the held record (or, with none, the time
// since the stage started) is older than StaleAfter. The signing time is the
// record's seq, which only the publisher can set: a replayed record stays as
// old as it was signed.
func (r *resolverActor) checkStale(ctx actor.Context) {
	if r.cfg.StaleAfter <= 0 {
		return
	}
	now := r.now()
	var signed time.Time
	since := r.started
	var seq int64 = -1
	if r.held != nil {
		signed, since, seq = r.held.Time(), r.held.Time(), r.held.Seq
	}
	age := now.Sub(since)
	if age <= r.cfg.StaleAfter || r.staleSeq == seq {
		return
	}
	r.staleSeq = seq
	r.cfg.Logger.Warn("resolver: no fresh record", "signed", signed, "age", age, "bound", r.cfg.StaleAfter)
	if ctx.Parent() != nil {
		ctx.Send(ctx.Parent(), &Stale{Signed: signed, Age: age})
	}
}
