package resolver

import "github.com/rpe-project/engine/release"

// lookup returns the record's entry for this node's target: the sealed
// entry when the node belongs to a private swarm (Config.Private), the
// public one otherwise. A private node never acts on a public entry, nor a
// public node on a sealed one: each reads only its own swarm's releases.
func (r *resolverActor) lookup(p *release.SignedPacket) (release.Entry, error) {
	if r.cfg.Private != nil {
		return p.LookupSealed(r.cfg.Target, r.cfg.Private)
	}
	return p.Lookup(r.cfg.Target)
}
