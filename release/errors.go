package release

import "errors"

// Sentinel errors. Every error the package returns wraps one of these (and
// adds the detail: which field, which chunk, which key), so callers match
// them with errors.Is and never parse messages.
var (
	// ErrMalformed is matched by every decoding error of a manifest, a key
	// file or an rpe record: bad layout, trailing bytes, fields out of range.
	ErrMalformed = errors.New("malformed")

	// ErrWrongKey means a manifest or packet is signed by another key than
	// the one expected. It is returned together with ErrBadSignature, so
	// errors.Is(err, ErrBadSignature) holds for it too.
	ErrWrongKey = errors.New("signed by another key")

	// ErrNotSemver means a version string is not a semantic version.
	ErrNotSemver = errors.New("not a semantic version")

	// ErrBadName means an app, channel or platform name is not allowed.
	ErrBadName = errors.New("bad name")

	// ErrSizeLimit means a manifest or artifact is larger than the limit.
	ErrSizeLimit = errors.New("size above limit")

	// ErrWrongTarget means a manifest is for another app, channel or
	// platform than the one asked for.
	ErrWrongTarget = errors.New("manifest is for another target")

	// ErrExpired means the current time is at or after a manifest's expiry.
	ErrExpired = errors.New("manifest expired")

	// ErrNotYetValid means a manifest was created later than the current
	// time (beyond MaxClockSkew).
	ErrNotYetValid = errors.New("manifest not yet valid")

	// ErrChunkMismatch means chunk data does not match its hash or length in
	// the manifest. It comes wrapped in a *ChunkError naming the chunk.
	ErrChunkMismatch = errors.New("chunk does not match manifest")

	// ErrNoSuchChunk means a chunk index is outside the manifest.
	ErrNoSuchChunk = errors.New("no such chunk")

	// ErrTruncated means a file ended before the size the manifest declares.
	ErrTruncated = errors.New("file truncated")

	// ErrTooLong means a file has more bytes than the manifest declares.
	ErrTooLong = errors.New("file longer than manifest")

	// ErrFileHash means a file's SHA-256 differs from the manifest's.
	//
	// Deprecated: VerifyFile no longer compares the whole-file hash (the
	// chunk hashes commit to every byte) and nothing in rpe returns it; it
	// stays for callers that match it.
	ErrFileHash = errors.New("file hash does not match manifest")

	// ErrEmpty means an artifact has no bytes; rpe does not ship empty files.
	ErrEmpty = errors.New("empty artifact")

	// ErrNoEntry means a signed packet has no entry for the target asked for.
	ErrNoEntry = errors.New("no entry for target")

	// ErrKeyPermissions means a secret key or shared secret file may be
	// read or written by group or others; the error names the chmod to run.
	ErrKeyPermissions = errors.New("accessible by group or others")

	// ErrStaleSeq means a new signed packet would not have a larger sequence
	// number than the one it replaces, so DHT nodes would refuse it.
	ErrStaleSeq = errors.New("sequence number not newer")
)

// ChunkError names the chunk that failed a check.
type ChunkError struct {
	Index int   // zero-based chunk index
	Err   error // wraps ErrChunkMismatch or ErrNoSuchChunk
}

func (e *ChunkError) Error() string { return "chunk " + itoa(e.Index) + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *ChunkError) Unwrap() error { return e.Err }
