// Package resolver is the stage that learns what the current release is.
//
// It polls the DHT for the publisher's signed record (a pkarr signed packet)
// at a jittered interval and also takes records that peers gossip (Offer).
// A record must verify under the publisher key and carry a higher seq than
// the one already held; the newest is kept on disk (state file "record") and
// re-put into the DHT whenever the DHT's copy is missing or older, so the
// record outlives the publisher being online.
//
// From the record it picks the entry for this node's app, channel and
// platform and reports ReleaseFound to its parent when that version is
// greater than the running one and not below the highest ever accepted
// (state file "highest", raised by Accepted). It sends RecordUpdated when a
// newer record arrives (the engine gossips it) and RecordRefused for a record
// or entry it will not act on: one signed by another key, forged or replayed
// (every time a peer sends it), or a genuine one that is malformed, has no
// entry for this target, or names a release below the floor or when the
// floor cannot be read (once per record, though every lookup finds it again).
//
// While lookups bring nothing newer than the record held, the interval
// doubles after each, up to four times PollInterval; a newer record, from
// the DHT or from a peer, brings it back to PollInterval. A node that holds
// no record yet polls at PollInterval.
//
// It trusts the configured publisher key as moved by the rotation
// statements it followed (state file "rotations", see rotate.go) and sends
// KeyRotated when it follows one. It refuses an entry past its expiry
// (ErrEntryExpired) and sends Stale when the newest record it holds was
// signed longer ago than Config.StaleAfter (fresh.go). With Config.Private
// it reads the private swarm's sealed entries only (private.go).
//
// After every third lookup in a row that finds no record it bootstraps the
// DHT node again, in case the routing table has gone stale, and reports
// Rebootstrapped.
package resolver
