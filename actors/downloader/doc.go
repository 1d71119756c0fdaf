// Package downloader is the stage that fetches a release from the swarm.
//
// It receives Fetch (from the engine root) naming a record entry. It joins
// the release's swarm, fetches the manifest from the first peer that has it
// and has the verifier check it, then requests chunks over every
// connected peer as the job's plan (internal/plan) decides: the plan is
// updated with each announcement, answer and check, and asked after each
// what to request now (rarest first, a pipeline per peer sized to its
// measured rate, seeds asked too, an endgame whose duplicates are
// cancelled once a copy arrives), with a timeout and a retry elsewhere for
// slow or lacking peers. A peer that claimed a chunk (in its Hello, as complete, or
// in a Have) and then refuses it loses that claim until it announces the
// chunk again, so a liar cannot make a chunk look less rare than it is and
// keep the seeds from being asked for it; one that refuses several claimed
// chunks is reported to the swarm as misbehaving. Each chunk is written to
// the release's data file in the store, checked by the verifier, and only
// then marked verified on disk and announced to the swarm, so other nodes
// can fetch it from here at once.
//
// Once a manifest is accepted and before any chunk is asked of a peer, the
// chunks found in a local file (Config.Reuse: the installed program) are
// copied in, checked and marked verified, and reported as Reused.
//
// What it is fetching is kept on disk (download.json in the state directory)
// and the chunk set lives in the store, so a restarted downloader resumes
// where it stopped and never fetches a verified chunk again.
//
// The downloader owns the fetch in progress (download.json, the job, what it
// knows each peer holds and which chunk it asked of whom) and no connection:
// it asks the swarm for the manifest or a chunk from a given peer
// (swarm.GetManifest, swarm.GetChunk, swarm.CancelChunk) and gets
// swarm.ManifestArrived, swarm.ChunkArrived or swarm.ChunkFailed back. On
// PeerDown the peer's requests are forgotten, so its chunks are asked of
// others at once; an answer that still arrives is used.
//
// A restarted verifier or swarm is not announced: the downloader heals on
// its own. Requests the verifier leaves unanswered for CheckTimeout are
// asked again (chunks read back from disk), and a peer the swarm no longer
// knows (ErrNoPeer) is forgotten; with no peer left for a while the
// downloader joins the release's swarm again.
//
// It receives Fetch, PeerUp, PeerDown and PeerHas (from the swarm),
// the swarm's answers, the verifier's answers and Stats. It sends Join, Leave, GetManifest, GetChunk,
// CancelChunk, Verified and Misbehaved to the swarm, CheckManifest,
// CheckChunk and Finish to the verifier, and Progress, Reused, ManifestAccepted,
// ManifestRefused, ChunkRefused, Completed and Failed to its parent.
package downloader
