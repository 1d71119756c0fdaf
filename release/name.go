package release

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// MaxNameLen is the longest app, channel or platform name: one DNS label.
const MaxNameLen = 63

// Target is what a node runs: the app, channel and platform whose releases it
// accepts. A manifest or record entry for any other target is refused.
type Target struct {
	App, Channel, Platform string
}

// String returns "app/channel/platform".
func (t Target) String() string { return t.App + "/" + t.Channel + "/" + t.Platform }

// Validate checks the three names with ValidateName.
func (t Target) Validate() error {
	if err := ValidateName("app", t.App); err != nil {
		return err
	}
	if err := ValidateName("channel", t.Channel); err != nil {
		return err
	}
	return ValidateName("platform", t.Platform)
}

// ValidateName checks an app, channel or platform name. Names are DNS labels
// in the signed record, and DNS compares labels without regard to case, so a
// name is 1 to 63 bytes of lower-case letters, digits, '-' and '_', starting
// with a letter or digit ("myapp", "stable", "linux-amd64"). kind names the
// field in the error.
func ValidateName(kind, s string) error {
	if len(s) == 0 {
		return fmt.Errorf("%s name: %w: empty", kind, ErrBadName)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s name %.20q…: %w: %d bytes, at most %d", kind, s, ErrBadName, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return fmt.Errorf("%s name %q: %w: character %q at position %d (allowed: a-z 0-9, and - _ after the first)", kind, s, ErrBadName, c, i+1)
		}
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// AppNameOf is the default app name for an artifact file: its base name up
// to the first dot, lower-cased ("MyApp.exe" and "myapp.1.2" are "myapp").
// The result may still fail ValidateName.
func AppNameOf(path string) string {
	base := filepath.Base(path)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	return strings.ToLower(base)
}
