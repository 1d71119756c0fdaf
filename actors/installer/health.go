package installer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rpe-project/engine/internal/atomicfile"
)

const (
	// PendingFile is the name of the pending-install marker in the state
	// directory.
	PendingFile = "install-pending.json"
	// FailedFile is the name of the list of releases that were rolled back,
	// in the state directory.
	FailedFile = "install-failed.json"

	// DefaultHealthTimeout is how long a new version has to confirm its
	// health when Pending.HealthTimeout is zero.
	DefaultHealthTimeout = 2 * time.Minute
	// DefaultMaxAttempts is how many starts a new version gets to confirm
	// its health when Pending.MaxAttempts is zero.
	DefaultMaxAttempts = 3

	// maxStateFile caps every read of the installer's state files.
	maxStateFile = 64 << 10
	// maxHealthTimeout bounds Pending.HealthTimeout (a year).
	maxHealthTimeout = 365 * 24 * time.Hour
	// maxFailed is how many rolled-back releases FailedFile remembers.
	maxFailed = 64
	// stateFormat is the format number of both state files.
	stateFormat = 1
)

var (
	// ErrBadPending is returned (wrapped) for a pending-install marker that
	// cannot be read: malformed, too large, of an unknown format, or with
	// missing or impossible fields.
	ErrBadPending = errors.New("installer: bad pending-install marker")
	// ErrBadFailedList is returned (wrapped) for a failed-install list that
	// cannot be read.
	ErrBadFailedList = errors.New("installer: bad failed-install list")
	// ErrNoPending is returned by Confirm and ExecNew when there is no
	// matching pending install.
	ErrNoPending = errors.New("installer: no pending install")
	// ErrHealthDeadline is the reason for a rollback when the new version
	// did not confirm its health before the deadline.
	ErrHealthDeadline = errors.New("installer: new version did not confirm its health in time")
	// ErrTooManyAttempts is the reason for a rollback when the new version
	// was started MaxAttempts times without confirming its health.
	ErrTooManyAttempts = errors.New("installer: new version started too often without confirming its health")
	// ErrExecFailed is the reason for a rollback when the new version could
	// not even be executed.
	ErrExecFailed = errors.New("installer: cannot execute new version")
	// ErrStalePending is the reason Boot gives for a marker whose target
	// does not hold the new file it names (see Boot).
	ErrStalePending = errors.New("installer: stale pending-install marker")
	// ErrExecUnsupported is returned by ExecSelf where the system has no
	// exec (not a Unix).
	ErrExecUnsupported = errors.New("installer: exec is not supported on this system")
	// ErrAlreadyOnTrial is returned by SwapOnTrial for the release that the
	// target already holds, on trial: nothing is changed, and the trial
	// goes on with its deadline and count of starts.
	ErrAlreadyOnTrial = errors.New("installer: release already installed and on trial")
)

// Execer replaces the running process with the program at path, passing
// argv and env; it returns only on failure. ExecSelf is the real one; the
// simulation, where hundreds of nodes share one process, passes its own.
type Execer func(path string, argv, env []string) error

// Pending is the marker of an install on trial: the new version has been
// swapped in and must confirm its health, or the backup is put back.
// SwapOnTrial writes it just before the swap, naming the new file by size
// and SHA-256, so a marker whose target does not hold that file is known to
// be stale (see Boot); it is removed when the new version confirms (or
// after a rollback).
type Pending struct {
	// Version is the version on trial; a process running it confirms.
	Version string
	// PreviousVersion is the version the backup holds: the last confirmed
	// one, which a rollback restores. A process running it that calls Boot
	// leaves an unarmed marker alone (it is the old process, still running,
	// not a start of the new version). May be empty.
	PreviousVersion string
	// ManifestID names the release on trial (hex), so a rolled-back release
	// is not installed again.
	ManifestID string
	// Backup is the absolute path of the previous executable.
	Backup string
	// Target is the absolute path of the executable that was replaced.
	Target string
	// Deadline is when the trial fails if not confirmed. Zero means not yet
	// armed: the first Boot (of any process) sets it to HealthTimeout after
	// its clock, so an install applied on restart, days later, gets its full
	// time.
	Deadline time.Time
	// Attempts counts the starts of the new version so far (Boot adds one
	// each time the new version boots).
	Attempts int
	// MaxAttempts is how many starts the new version gets; zero means
	// DefaultMaxAttempts.
	MaxAttempts int
	// HealthTimeout arms Deadline when it is zero; zero means
	// DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Size and SHA256 (lower-case hex) describe the new executable. When
	// set, Boot and SwapOnTrial first check that Target holds exactly that
	// file; when SHA256 is empty (Size must then be 0) the marker is
	// trusted as it is.
	Size   int64
	SHA256 string
	// ReplacedUnconfirmed says the install replaced a target that was
	// itself never confirmed (a version still on trial or waiting for its
	// first start), so the backup was kept rather than overwritten.
	ReplacedUnconfirmed bool
	// InstalledBy is the version of the process that made this install,
	// when it is not PreviousVersion (an unconfirmed version that installed
	// again). Like PreviousVersion, its Boot leaves an unarmed marker alone.
	InstalledBy string
}

// pendingJSON is the on-disk form of Pending (see docs/FORMATS.md, "State
// directory").
type pendingJSON struct {
	Format          int    `json:"format"`
	Version         string `json:"version"`
	PreviousVersion string `json:"previous_version,omitempty"`
	ManifestID      string `json:"manifest_id,omitempty"`
	Target          string `json:"target"`
	Backup          string `json:"backup"`
	Deadline        string `json:"deadline,omitempty"`
	Attempts        int    `json:"attempts"`
	MaxAttempts     int    `json:"max_attempts,omitempty"`
	HealthTimeoutMS int64  `json:"health_timeout_ms,omitempty"`
	Size            int64  `json:"size,omitempty"`
	SHA256          string `json:"sha256,omitempty"`
	// ReplacedUnconfirmed is "replaced_unconfirmed": true when set.
	ReplacedUnconfirmed bool   `json:"replaced_unconfirmed,omitempty"`
	InstalledBy         string `json:"installed_by,omitempty"`
}

func (p *Pending) check() error {
	switch {
	case p.Version == "":
		return errors.New("no version")
	case !filepath.IsAbs(p.Target):
		return fmt.Errorf("target %q is not an absolute path", p.Target)
	case !filepath.IsAbs(p.Backup):
		return fmt.Errorf("backup %q is not an absolute path", p.Backup)
	case filepath.Clean(p.Target) == filepath.Clean(p.Backup):
		return errors.New("backup is the target")
	case p.Attempts < 0, p.MaxAttempts < 0, p.HealthTimeout < 0:
		return errors.New("negative count or timeout")
	case p.HealthTimeout > maxHealthTimeout:
		return fmt.Errorf("health timeout %v longer than %v", p.HealthTimeout, maxHealthTimeout)
	case p.SHA256 == "" && p.Size != 0:
		return errors.New("size without sha256")
	case p.SHA256 != "" && (p.Size < 0 || !isHex256(p.SHA256)):
		return fmt.Errorf("sha256 %q or size %d invalid", p.SHA256, p.Size)
	}
	return nil
}

// isHex256 reports whether s is 64 lower-case hex digits.
func isHex256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (p *Pending) maxAttempts() int {
	if p.MaxAttempts == 0 {
		return DefaultMaxAttempts
	}
	return p.MaxAttempts
}

func (p *Pending) healthTimeout() time.Duration {
	if p.HealthTimeout == 0 {
		return DefaultHealthTimeout
	}
	return p.HealthTimeout
}

// overdue says why the trial has failed by now, or nil.
func (p *Pending) overdue(now time.Time) error {
	if !p.Deadline.IsZero() && now.After(p.Deadline) {
		return fmt.Errorf("%w (deadline %s)", ErrHealthDeadline, p.Deadline.Format(time.RFC3339))
	}
	if p.Attempts >= p.maxAttempts() {
		return fmt.Errorf("%w (%d starts)", ErrTooManyAttempts, p.Attempts)
	}
	return nil
}

// WritePending atomically writes the pending-install marker into stateDir
// (created 0700 if missing): temporary file, fsync, rename, directory fsync.
// Target and Backup must be absolute paths, since the new process may run in
// another working directory.
func WritePending(stateDir string, p Pending) error {
	data, err := encodePending(&p)
	if err != nil {
		return fmt.Errorf("write pending install: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(stateDir, PendingFile), data); err != nil {
		return fmt.Errorf("write pending install: %w", err)
	}
	return nil
}

// encodePending returns the file form of p (see docs/FORMATS.md).
func encodePending(p *Pending) ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPending, err)
	}
	j := pendingJSON{
		Format: stateFormat, Version: p.Version, PreviousVersion: p.PreviousVersion,
		ManifestID: p.ManifestID, Target: p.Target, Backup: p.Backup,
		Attempts: p.Attempts, MaxAttempts: p.MaxAttempts,
		HealthTimeoutMS: p.HealthTimeout.Milliseconds(),
		Size:            p.Size, SHA256: p.SHA256, ReplacedUnconfirmed: p.ReplacedUnconfirmed,
		InstalledBy: p.InstalledBy,
	}
	if !p.Deadline.IsZero() {
		j.Deadline = p.Deadline.UTC().Format(time.RFC3339Nano)
	}
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// ReadPending reads the pending-install marker from stateDir. It returns
// (nil, nil) when there is none, and an error wrapping ErrBadPending for a
// marker it cannot trust.
func ReadPending(stateDir string) (*Pending, error) {
	path := filepath.Join(stateDir, PendingFile)
	data, err := readCapped(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pending install %s: %w", path, err)
	}
	p, err := decodePending(data)
	if err != nil {
		return nil, fmt.Errorf("read pending install %s: %w: %w", path, ErrBadPending, err)
	}
	return p, nil
}

func decodePending(data []byte) (*Pending, error) {
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStateFile)
	}
	var j pendingJSON
	if err := decodeStrict(data, &j); err != nil {
		return nil, err
	}
	if j.Format != stateFormat {
		return nil, fmt.Errorf("format %d, want %d", j.Format, stateFormat)
	}
	p := &Pending{
		Version: j.Version, PreviousVersion: j.PreviousVersion, ManifestID: j.ManifestID,
		Target: j.Target, Backup: j.Backup, Attempts: j.Attempts, MaxAttempts: j.MaxAttempts,
		Size: j.Size, SHA256: j.SHA256, ReplacedUnconfirmed: j.ReplacedUnconfirmed,
		InstalledBy: j.InstalledBy,
	}
	if j.HealthTimeoutMS < 0 || j.HealthTimeoutMS > maxHealthTimeout.Milliseconds() {
		return nil, fmt.Errorf("health timeout %d ms out of range", j.HealthTimeoutMS)
	}
	p.HealthTimeout = time.Duration(j.HealthTimeoutMS) * time.Millisecond
	if j.Deadline != "" {
		d, err := time.Parse(time.RFC3339Nano, j.Deadline)
		if err != nil {
			return nil, fmt.Errorf("deadline: %w", err)
		}
		p.Deadline = d
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// ClearPending removes the pending-install marker; no marker is no error.
func ClearPending(stateDir string) error {
	if err := atomicfile.Remove(filepath.Join(stateDir, PendingFile)); err != nil {
		return fmt.Errorf("clear pending install: %w", err)
	}
	return nil
}

// BootState says what Boot found.
type BootState int

const (
	// BootClean: no install is pending; nothing to do.
	BootClean BootState = iota
	// BootTrial: this process is the new version on trial. It must call
	// Confirm once it is healthy, before Pending.Deadline, or RollBack if it
	// finds itself unhealthy.
	BootTrial
	// BootRolledBack: the trial had failed (deadline passed or too many
	// starts); the backup is back in place, the marker is gone and the
	// release is listed as failed. If Restart is set, the caller runs
	// another version than the restored one and should exec Pending.Target,
	// now the old version.
	BootRolledBack
	// BootWaiting: an install of another version than the caller's is on
	// trial and not yet overdue; it was left alone (its deadline armed if
	// it was not). This is what a supervisor sees before it starts the
	// target.
	BootWaiting
)

func (s BootState) String() string {
	switch s {
	case BootClean:
		return "clean"
	case BootTrial:
		return "trial"
	case BootRolledBack:
		return "rolled-back"
	case BootWaiting:
		return "waiting"
	}
	return fmt.Sprintf("BootState(%d)", int(s))
}

// BootResult is what Boot found and did.
type BootResult struct {
	State BootState
	// Pending is the marker as Boot left it (for BootRolledBack, as it was
	// when the trial failed); nil for BootClean.
	Pending *Pending
	// Reason says why a trial failed (BootRolledBack); it wraps
	// ErrHealthDeadline, ErrTooManyAttempts or ErrStalePending. With
	// BootClean it is nil, or wraps ErrStalePending when a stale marker
	// was discarded.
	Reason error
	// Restart is set with BootRolledBack when the caller runs another
	// version than the restored one (Pending.PreviousVersion): the rejected
	// version, a misversioned build of it, or the unconfirmed version that
	// installed it. It should exec Pending.Target (the restored old
	// version).
	Restart bool

	stateDir string
}

// Boot is called by an engine as it starts, before anything else touches the
// target. runningVersion is the version of the running program.
//
//   - No marker: BootClean.
//   - The marker names the new file (Pending.SHA256) and the target does
//     not hold it: the marker is stale, either because the process that
//     wrote it stopped before its swap renamed the new file into place, or
//     because a rollback restored the target and stopped before removing
//     the marker. If the target it describes replaced the last confirmed
//     version (ReplacedUnconfirmed false), the target is that confirmed
//     version: the marker is removed, BootClean with Reason set. Otherwise
//     the target holds a version that was never confirmed: the backup is
//     put back and the marker removed, and BootRolledBack says so, with
//     Restart set unless the caller is PreviousVersion or a supervisor.
//     Nothing is listed as failed, unless the marker counts starts of the
//     new version (Attempts > 0): then its trial had begun and the target
//     was replaced since, by a rollback that died before removing the
//     marker; the release is listed as failed and BootRolledBack returned.
//   - The trial is overdue (Deadline passed, or MaxAttempts starts of the new
//     version without a confirm): whoever runs rolls back (see RollBack) and
//     gets BootRolledBack. A process of any version but the restored one
//     (the rejected version, a misversioned build of it, or an unconfirmed
//     version that installed it) gets Restart and should then exec the
//     target, which is the old version again.
//   - runningVersion is the version on trial: Boot counts this start, arms
//     the deadline if unarmed, writes the marker back (so a crash right
//     after still counts) and returns BootTrial; call Confirm when healthy.
//   - runningVersion is PreviousVersion (or InstalledBy) and the deadline
//     is not armed: the old process that installed on restart is still
//     running (or its engine was restarted within it); it is not a start of
//     the new version, so BootWaiting with nothing changed.
//   - Otherwise (another version, or "" from a supervisor, see BeforeLaunch):
//     BootWaiting, deadline armed if unarmed, nothing else changed.
//
// A marker that cannot be read returns an error wrapping ErrBadPending: the
// installer will not roll back on the word of a file it cannot parse. The
// caller should report it; ClearPending discards it. Every step is
// idempotent, so after any error Boot can simply run again.
func Boot(stateDir, runningVersion string, now time.Time) (BootResult, error) {
	unlock, err := lockState(stateDir)
	if err != nil {
		return BootResult{}, fmt.Errorf("boot: %w", err)
	}
	defer unlock()
	p, err := ReadPending(stateDir)
	if err != nil {
		return BootResult{}, fmt.Errorf("boot: %w", err)
	}
	if p == nil {
		return BootResult{State: BootClean, stateDir: stateDir}, nil
	}
	holds, err := p.targetHolds()
	if err != nil {
		return BootResult{}, fmt.Errorf("boot: %w", err)
	}
	if !holds {
		return bootStale(stateDir, p, runningVersion, now)
	}
	if reason := p.overdue(now); reason != nil {
		r := BootResult{State: BootRolledBack, Pending: p, Reason: reason,
			Restart: p.mustRestart(runningVersion), stateDir: stateDir}
		if err := rollBack(stateDir, p, reason, now); err != nil {
			return BootResult{}, fmt.Errorf("boot: %w", err)
		}
		return r, nil
	}
	if p.Deadline.IsZero() && p.installedBy(runningVersion) {
		return BootResult{State: BootWaiting, Pending: p, stateDir: stateDir}, nil
	}
	changed := false
	if p.Deadline.IsZero() {
		p.Deadline = now.Add(p.healthTimeout())
		changed = true
	}
	state := BootWaiting
	if runningVersion == p.Version {
		p.Attempts++
		state, changed = BootTrial, true
	}
	if changed {
		if err := WritePending(stateDir, *p); err != nil {
			return BootResult{}, fmt.Errorf("boot: %w", err)
		}
	}
	return BootResult{State: state, Pending: p, stateDir: stateDir}, nil
}

// installedBy reports whether a process running version v is one that was
// running when this install was made (so its Boot is no start of the new
// version).
func (p *Pending) installedBy(v string) bool {
	return v != "" && v != p.Version && (v == p.PreviousVersion || v == p.InstalledBy)
}

// mustRestart reports whether a process running version v must exec the
// target once the backup is back: every version but the restored one
// (PreviousVersion) and a supervisor (""). That is the rejected version, a
// misversioned build of it, and an unconfirmed version that installed it
// (InstalledBy): none of them may run on once the trial is over.
func (p *Pending) mustRestart(v string) bool {
	return v != "" && v != p.PreviousVersion
}

// bootStale handles a marker whose target does not hold the new file (see
// Boot). Every step is idempotent, and the marker goes last, so after a
// crash or error the next Boot repeats them all.
func bootStale(stateDir string, p *Pending, runningVersion string, now time.Time) (BootResult, error) {
	reason := fmt.Errorf("%w: %s does not hold %s (sha256 %s)", ErrStalePending, p.Target, p.Version, p.SHA256)
	r := BootResult{State: BootClean, Reason: reason, stateDir: stateDir}
	if p.ReplacedUnconfirmed {
		// The target holds a version that was never confirmed.
		if err := Rollback(p.Target, p.Backup); err != nil {
			return BootResult{}, fmt.Errorf("boot: roll back unconfirmed %s: %w", p.Target, err)
		}
		r.State, r.Pending = BootRolledBack, p
		r.Restart = p.mustRestart(runningVersion)
	}
	if p.Attempts > 0 {
		// The new version did start, so its swap happened and the target
		// was replaced since: a rollback died after its restore (or a human
		// put another file there). Its trial ended without a confirm.
		f := FailedInstall{Version: p.Version, ManifestID: p.ManifestID, At: now, Reason: reason.Error()}
		if err := addFailed(stateDir, f); err != nil {
			return BootResult{}, fmt.Errorf("boot: %w", err)
		}
		r.State, r.Pending = BootRolledBack, p
		r.Restart = r.Restart || runningVersion == p.Version
	}
	if err := ClearPending(stateDir); err != nil {
		return BootResult{}, fmt.Errorf("boot: %w", err)
	}
	return r, nil
}

// targetHolds reports whether p.Target holds the file p names (always true
// for a marker that names none). A missing target holds nothing.
func (p *Pending) targetHolds() (bool, error) {
	if p.SHA256 == "" {
		return true, nil
	}
	// Lstat first: opening a FIFO or device named by the marker could block.
	fi, err := os.Lstat(p.Target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check target: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != p.Size {
		return false, nil
	}
	f, err := os.Open(p.Target)
	if err != nil {
		return false, fmt.Errorf("check target: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, p.Size+1)); err != nil {
		return false, fmt.Errorf("check target %s: %w", p.Target, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == p.SHA256, nil
}

// BeforeLaunch is Boot for a supervising process (such as `rpe node --run`)
// that is about to start the target and runs no version of it itself. It
// rolls back an overdue trial and arms an unarmed deadline, so a new version
// that crashes before it ever reaches Boot is still rolled back once the
// deadline passes.
func BeforeLaunch(stateDir string, now time.Time) (BootResult, error) {
	return Boot(stateDir, "", now)
}

// Confirm ends a trial (BootTrial): the new version is healthy, the marker
// is removed and the backup kept for a manual rollback. It returns
// ErrNoPending if the marker is gone or now names another install. A
// confirm after the deadline is accepted as long as nobody has rolled back
// yet: a healthy process is better evidence than a clock.
func (r BootResult) Confirm() error {
	if r.State != BootTrial || r.Pending == nil {
		return fmt.Errorf("confirm: %w (boot state %s)", ErrNoPending, r.State)
	}
	unlock, err := lockState(r.stateDir)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	defer unlock()
	cur, err := ReadPending(r.stateDir)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	if !samePending(cur, r.Pending) {
		return fmt.Errorf("confirm %s: %w", r.Pending.Version, ErrNoPending)
	}
	return ClearPending(r.stateDir)
}

// RollBack ends a trial (BootTrial) as failed: the running new version
// found itself unhealthy, or its deadline passed while it ran. It restores
// the backup, lists the release as failed with reason, and removes the
// marker; the caller should then exec Pending.Target. If this version has
// since installed the next one on restart, which has not started yet, that
// install is dropped with it (the backup, the last confirmed version, comes
// back). It returns ErrNoPending if the marker is gone or now names another
// install.
func (r BootResult) RollBack(reason error, now time.Time) error {
	if r.State != BootTrial || r.Pending == nil {
		return fmt.Errorf("roll back: %w (boot state %s)", ErrNoPending, r.State)
	}
	unlock, err := lockState(r.stateDir)
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	defer unlock()
	cur, err := ReadPending(r.stateDir)
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	if supersedes(cur, r.Pending) {
		// This version installed the next one on restart, which has not
		// started yet: the target holds it, the backup is still the last
		// confirmed version. The trial that failed is this one.
		failed := *r.Pending
		failed.Target, failed.Backup = cur.Target, cur.Backup
		return rollBack(r.stateDir, &failed, reason, now)
	}
	if !samePending(cur, r.Pending) {
		return fmt.Errorf("roll back %s: %w", r.Pending.Version, ErrNoPending)
	}
	return rollBack(r.stateDir, cur, reason, now)
}

// supersedes reports whether cur is an install made by the version on
// trial in p, on restart and not yet started: its trial carries p's backup
// (ReplacedUnconfirmed, same PreviousVersion) and is unarmed. The process
// running p's version then still runs unconfirmed, and its rollback must
// still restore the backup.
func supersedes(cur, p *Pending) bool {
	return cur != nil && p != nil && cur.ReplacedUnconfirmed && cur.Deadline.IsZero() &&
		cur.InstalledBy == p.Version && cur.PreviousVersion == p.PreviousVersion &&
		cur.Target == p.Target && cur.Backup == p.Backup
}

func samePending(a, b *Pending) bool {
	return a != nil && b != nil && a.Version == b.Version && a.ManifestID == b.ManifestID &&
		a.Target == b.Target && a.Backup == b.Backup
}

// rollBack restores the backup, records the failure and clears the marker,
// in that order, so that after a crash or error at any step the marker is
// still there and the next Boot repeats the whole (idempotent) sequence.
func rollBack(stateDir string, p *Pending, reason error, now time.Time) error {
	if reason == nil {
		reason = errors.New("unspecified")
	}
	if err := Rollback(p.Target, p.Backup); err != nil {
		return fmt.Errorf("roll back %s: %w", p.Version, err)
	}
	f := FailedInstall{Version: p.Version, ManifestID: p.ManifestID, At: now, Reason: reason.Error()}
	if err := addFailed(stateDir, f); err != nil {
		return fmt.Errorf("roll back %s: %w", p.Version, err)
	}
	return ClearPending(stateDir)
}

// ExecNew is what the old process does right after a swap under the Now and
// At policies: it arms the trial's deadline (if unarmed) and execs the new
// target through exec with argv and env. It returns only if exec fails; then
// the new version cannot run at all, so the backup is put back at once, the
// release listed as failed, and the error (wrapping ErrExecFailed) returned;
// the caller keeps running the old version.
//
// A nil exec error from a fake Execer is passed through: the marker stays,
// as it would for a real exec, for the next Boot to find.
func ExecNew(stateDir string, exec Execer, argv, env []string, now time.Time) error {
	p, err := armForExec(stateDir, now)
	if err != nil {
		return fmt.Errorf("exec new version: %w", err)
	}
	// The lock is not held across exec: a successful exec would release it
	// anyway, and an Execer may itself call Boot (rpe node's does).
	xerr := exec(p.Target, argv, env)
	if xerr == nil {
		return nil
	}
	reason := fmt.Errorf("%w %s: %w", ErrExecFailed, p.Target, xerr)
	unlock, err := lockState(stateDir)
	if err != nil {
		return errors.Join(reason, err)
	}
	defer unlock()
	if cur, err := ReadPending(stateDir); err != nil || !samePending(cur, p) {
		return errors.Join(reason, fmt.Errorf("roll back %s: %w", p.Version, ErrNoPending), err)
	}
	if err := rollBack(stateDir, p, reason, now); err != nil {
		return errors.Join(reason, err)
	}
	return reason
}

// armForExec reads the marker for ExecNew and arms its deadline if unarmed,
// under the state lock.
func armForExec(stateDir string, now time.Time) (*Pending, error) {
	unlock, err := lockState(stateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := ReadPending(stateDir)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, ErrNoPending
	}
	if p.Deadline.IsZero() {
		p.Deadline = now.Add(p.healthTimeout())
		if err := WritePending(stateDir, *p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// FailedInstall is a release that was rolled back.
type FailedInstall struct {
	Version    string
	ManifestID string
	At         time.Time
	Reason     string
}

type failedEntry struct {
	Version    string    `json:"version"`
	ManifestID string    `json:"manifest_id,omitempty"`
	At         time.Time `json:"at"`
	Reason     string    `json:"reason"`
}

type failedJSON struct {
	Format int           `json:"format"`
	Failed []failedEntry `json:"failed"`
}

// Failed lists the releases rolled back on this node, oldest first (at most
// the last 64). A missing list is an empty one.
func Failed(stateDir string) ([]FailedInstall, error) {
	path := filepath.Join(stateDir, FailedFile)
	data, err := readCapped(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read failed installs %s: %w", path, err)
	}
	list, err := decodeFailed(data)
	if err != nil {
		return nil, fmt.Errorf("read failed installs %s: %w: %w", path, ErrBadFailedList, err)
	}
	return list, nil
}

func decodeFailed(data []byte) ([]FailedInstall, error) {
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStateFile)
	}
	var j failedJSON
	if err := decodeStrict(data, &j); err != nil {
		return nil, err
	}
	if j.Format != stateFormat {
		return nil, fmt.Errorf("format %d, want %d", j.Format, stateFormat)
	}
	if len(j.Failed) > maxFailed {
		return nil, fmt.Errorf("%d entries, at most %d", len(j.Failed), maxFailed)
	}
	out := make([]FailedInstall, 0, len(j.Failed))
	for _, f := range j.Failed {
		out = append(out, FailedInstall{Version: f.Version, ManifestID: f.ManifestID, At: f.At, Reason: f.Reason})
	}
	return out, nil
}

// encodeFailed returns the file form of list, keeping its newest maxFailed
// entries and the first 512 bytes of each reason.
func encodeFailed(list []FailedInstall) ([]byte, error) {
	if len(list) > maxFailed {
		list = list[len(list)-maxFailed:]
	}
	j := failedJSON{Format: stateFormat, Failed: []failedEntry{}}
	for _, g := range list {
		j.Failed = append(j.Failed, failedEntry{g.Version, g.ManifestID, g.At.UTC(), truncate(g.Reason, 512)})
	}
	for {
		data, err := json.MarshalIndent(j, "", "  ")
		if err != nil {
			return nil, err
		}
		if len(data) < maxStateFile || len(j.Failed) == 0 {
			return append(data, '\n'), nil
		}
		j.Failed = j.Failed[1:] // Escaped reasons made it too long: drop the oldest.
	}
}

// IsFailed reports whether the release with manifestID was rolled back on
// this node, so the engine does not install it again. Releases are told
// apart by manifest ID: a publisher who fixes a broken build publishes a new
// manifest (and version).
func IsFailed(stateDir, manifestID string) (bool, error) {
	list, err := Failed(stateDir)
	if err != nil {
		return false, err
	}
	for _, f := range list {
		if f.ManifestID == manifestID {
			return true, nil
		}
	}
	return false, nil
}

// addFailed appends f to the failed list (replacing an entry for the same
// release), keeping the newest maxFailed. An unreadable list is replaced:
// losing old entries beats never rolling back.
func addFailed(stateDir string, f FailedInstall) error {
	list, err := Failed(stateDir)
	if err != nil && !errors.Is(err, ErrBadFailedList) {
		return err
	}
	list = deleteFunc(list, func(g FailedInstall) bool {
		return g.ManifestID == f.ManifestID && g.Version == f.Version
	})
	data, err := encodeFailed(append(list, f))
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(stateDir, FailedFile), data)
}

func deleteFunc(s []FailedInstall, del func(FailedInstall) bool) []FailedInstall {
	out := s[:0]
	for _, x := range s {
		if !del(x) {
			out = append(out, x)
		}
	}
	return out
}

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// readCapped reads at most maxStateFile+1 bytes of a state file; the
// caller refuses a file longer than maxStateFile.
func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxStateFile+1))
}

// writeFileAtomic writes data to path (mode 0600) with atomicfile,
// creating its directory (0700) if needed.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

// LockFile is the name of the installer's lock file in the state directory.
const LockFile = "install.lock"

// lockState serialises the installer's changes to the state directory:
// Boot, Confirm, RollBack, SwapOnTrial and ExecNew each read the marker,
// decide and write, and two of them interleaved (the engine confirming the
// running version on one goroutine while the installer actor installs the
// next release on another) could otherwise clear a marker just written, or
// keep a backup that was just superseded by a confirm. It takes an
// exclusive flock on <stateDir>/install.lock, waiting for it, and returns
// the function that releases it. A state directory that does not exist
// holds no marker: then nothing is locked. None of the functions that lock
// calls another that does, nor calls out (exec) while it holds the lock.
func lockState(stateDir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(stateDir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(stateDir); errors.Is(serr, fs.ErrNotExist) {
			return func() {}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock state dir %s: %w", stateDir, err)
	}
	return func() { f.Close() }, nil
}
