package release

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// MaxVersionLen is the longest version string a manifest or record carries.
const MaxVersionLen = 64

// ParseVersion parses a semantic version (https://semver.org), such as
// "1.2.3" or "2.0.0-rc.1+build.5". A single leading "v" is accepted and
// dropped; partial versions such as "1.2" are not semver and are refused. The
// error quotes s and wraps ErrNotSemver.
func ParseVersion(s string) (*semver.Version, error) {
	t := strings.TrimPrefix(s, "v")
	if len(t) > MaxVersionLen {
		return nil, fmt.Errorf("version %q: %w: longer than %d characters", s, ErrNotSemver, MaxVersionLen)
	}
	v, err := semver.StrictNewVersion(t)
	if err != nil {
		return nil, fmt.Errorf("version %q: %w (%v)", s, ErrNotSemver, err)
	}
	// Re-parse the canonical text so that Original() is canonical too.
	if c := v.String(); c != t {
		return semver.StrictNewVersion(c)
	}
	return v, nil
}

// parseCanonicalVersion accepts only the canonical text of a version, the
// one its String method writes, so every version has exactly one encoding.
func parseCanonicalVersion(s string) (*semver.Version, error) {
	if len(s) > MaxVersionLen {
		return nil, fmt.Errorf("version %.20q…: %w: longer than %d characters", s, ErrNotSemver, MaxVersionLen)
	}
	v, err := semver.StrictNewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("version %q: %w (%v)", s, ErrNotSemver, err)
	}
	if v.String() != s {
		return nil, fmt.Errorf("version %q: %w: not in canonical form %q", s, ErrNotSemver, v.String())
	}
	return v, nil
}
