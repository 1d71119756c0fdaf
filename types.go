package engine

import (
	"fmt"

	"github.com/rpe-project/engine/actors/installer"
)

// Policy says when a verified release is installed: ApplyNow,
// ApplyOnRestart, ApplyAt, ApplyWindow or ApplyManual. The zero value is ApplyNow. A *Policy is a
// flag.Value, so a command line can set it with ParsePolicy's syntax.
type Policy struct {
	kind               policyKind
	hour, minute       int
	endHour, endMinute int
}

type policyKind int

const (
	applyNow policyKind = iota
	applyOnRestart
	applyAt
	applyWindow
	applyManual
)

// ApplyNow installs at once and re-executes into the new version.
var ApplyNow = Policy{kind: applyNow}

// ApplyOnRestart swaps the file and lets the next start run it.
var ApplyOnRestart = Policy{kind: applyOnRestart}

// ApplyAt installs at the next local hh:mm.
func ApplyAt(hour, minute int) Policy {
	return Policy{kind: applyAt, hour: hour, minute: minute}
}

// ApplyWindow installs when the local wall clock is inside [start, end),
// at once if it is, else at the window's next start. A window whose end is
// before its start runs across midnight (ApplyWindow(22, 0, 2, 0)); on a
// day the clock changes it keeps its wall-clock bounds.
func ApplyWindow(startHour, startMinute, endHour, endMinute int) Policy {
	return Policy{kind: applyWindow, hour: startHour, minute: startMinute, endHour: endHour, endMinute: endMinute}
}

// ApplyManual installs only when the program calls Engine.Apply: a verified
// release is announced by an UpdateReady event and waits.
var ApplyManual = Policy{kind: applyManual}

// ParsePolicy reads "now", "on-restart", "manual", "at=HH:MM" or
// "window=HH:MM-HH:MM" (24-hour clock).
// Case and surrounding spaces are ignored; "" is ApplyNow.
func ParsePolicy(s string) (Policy, error) {
	p, err := installer.ParsePolicy(s)
	if err != nil {
		return Policy{}, err
	}
	return policyOf(p), nil
}

// String returns the policy in ParsePolicy's syntax.
func (p Policy) String() string {
	switch p.kind {
	case applyOnRestart:
		return "on-restart"
	case applyAt:
		return fmt.Sprintf("at=%02d:%02d", p.hour, p.minute)
	case applyWindow, applyManual:
		return p.installer().String()
	}
	return "now"
}

// Set parses s as ParsePolicy does; it makes *Policy a flag.Value.
func (p *Policy) Set(s string) error {
	q, err := ParsePolicy(s)
	if err != nil {
		return err
	}
	*p = q
	return nil
}

func policyOf(p installer.Policy) Policy {
	switch p.Kind {
	case installer.OnRestart:
		return ApplyOnRestart
	case installer.At:
		return ApplyAt(p.Hour, p.Minute)
	case installer.Window:
		return ApplyWindow(p.Hour, p.Minute, p.EndHour, p.EndMinute)
	case installer.Manual:
		return ApplyManual
	}
	return ApplyNow
}

func (p Policy) installer() installer.Policy {
	switch p.kind {
	case applyOnRestart:
		return installer.Policy{Kind: installer.OnRestart}
	case applyAt:
		return installer.Policy{Kind: installer.At, Hour: p.hour, Minute: p.minute}
	case applyWindow:
		return installer.Policy{Kind: installer.Window, Hour: p.hour, Minute: p.minute, EndHour: p.endHour, EndMinute: p.endMinute}
	case applyManual:
		return installer.Policy{Kind: installer.Manual}
	}
	return installer.Policy{Kind: installer.Now}
}

// Phase is what a node is doing with the newest release it knows of.
type Phase int

// The phases, in the order a release goes through them.
const (
	// PhaseIdle: no newer release is being handled.
	PhaseIdle Phase = iota
	// PhaseDownloading: a newer release is being fetched and verified.
	PhaseDownloading
	// PhaseVerified: every byte is verified and staged.
	PhaseVerified
	// PhaseScheduled: the release will be installed at a set time.
	PhaseScheduled
	// PhaseInstalled: the target was swapped.
	PhaseInstalled
)

// String returns the phase's lower-case name ("idle", "downloading", ...).
func (p Phase) String() string {
	return enumName([]string{"idle", "downloading", "verified", "scheduled", "installed"}, int(p), "phase")
}

// MarshalText returns String, so the phase reads as a word in JSON.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Stage names one of a node's stages (see docs/ARCHITECTURE.md).
type Stage int

// The stages of a node.
const (
	// StageResolver reads the publisher's record from the DHT and gossip.
	StageResolver Stage = iota
	// StageSwarm talks to peers: announces, serves chunks, passes on news.
	StageSwarm
	// StageDownloader fetches a release's manifest and chunks.
	StageDownloader
	// StageVerifier checks manifests and chunks.
	StageVerifier
	// StageInstaller swaps the target and restarts into it.
	StageInstaller
)

func stageNames() []string {
	return []string{"resolver", "swarm", "downloader", "verifier", "installer"}
}

// String returns the stage's lower-case name ("resolver", "swarm", ...).
func (s Stage) String() string { return enumName(stageNames(), int(s), "stage") }

// MarshalText returns String, so the stage reads as a word in JSON.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// stageOf maps a stage's actor name to its Stage.
func stageOf(name string) (Stage, bool) {
	for i, n := range stageNames() {
		if n == name {
			return Stage(i), true
		}
	}
	return 0, false
}

// Refusal says what a Refused event refused.
type Refusal int

// What can be refused.
const (
	// RefusedRecord: a publisher record (wrong key or signature, replayed,
	// malformed, no entry for this target, below the version floor).
	RefusedRecord Refusal = iota
	// RefusedManifest: a manifest (wrong app or platform, expired, not
	// newer, bad signature).
	RefusedManifest
	// RefusedChunk: a chunk whose bytes do not match the manifest.
	RefusedChunk
	// RefusedRelease: a release rolled back here before.
	RefusedRelease
)

// String returns what was refused in lower case ("record", "chunk", ...).
func (r Refusal) String() string {
	return enumName([]string{"record", "manifest", "chunk", "release"}, int(r), "refusal")
}

// MarshalText returns String, so the refusal reads as a word in JSON.
func (r Refusal) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func enumName(names []string, i int, kind string) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("%s(%d)", kind, i)
}

// UnmarshalText reads a phase's name, as MarshalText writes it.
func (p *Phase) UnmarshalText(b []byte) error { return parseEnum(b, p, PhaseInstalled, "phase") }

// UnmarshalText reads a stage's name, as MarshalText writes it.
func (s *Stage) UnmarshalText(b []byte) error { return parseEnum(b, s, StageInstaller, "stage") }

// UnmarshalText reads what was refused, as MarshalText writes it.
func (r *Refusal) UnmarshalText(b []byte) error { return parseEnum(b, r, RefusedRelease, "refusal") }

// parseEnum sets *v to the value from 0 to last whose String is b.
func parseEnum[T interface {
	~int
	String() string
}](b []byte, v *T, last T, kind string) error {
	for x := T(0); x <= last; x++ {
		if x.String() == string(b) {
			*v = x
			return nil
		}
	}
	return fmt.Errorf("engine: unknown %s %q", kind, b)
}
