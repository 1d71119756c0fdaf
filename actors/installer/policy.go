package installer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PolicyKind names when a verified release is applied.
type PolicyKind int

const (
	// Now swaps the executable and re-executes it at once. It is the zero
	// value, so a zero Policy means "apply now".
	Now PolicyKind = iota
	// OnRestart swaps the executable at once but leaves the running process
	// alone: the new version runs from the next start.
	OnRestart
	// At swaps and re-executes at the next local Hour:Minute.
	At
	// Window swaps and re-executes at once when the local wall clock is
	// inside [Hour:Minute, EndHour:EndMinute), else at the window's next
	// start. A window whose end is before its start crosses midnight
	// (22:00-02:00).
	Window
	// Manual swaps and re-executes only when the program asks (the engine
	// reports the release ready and waits for Engine.Apply).
	Manual
)

// ErrBadPolicy is returned (wrapped) by ParsePolicy for text that names no
// policy.
var ErrBadPolicy = errors.New("installer: bad apply policy")

// Policy says when a verified release is applied. Hour and Minute are used
// only by At and are wall-clock time in the location of the time given to
// NextApply.
type Policy struct {
	Kind         PolicyKind
	Hour, Minute int
	// EndHour and EndMinute end a Window (exclusive).
	EndHour, EndMinute int
}

// ParsePolicy reads "now", "on-restart", "manual", "at=HH:MM" or
// "window=HH:MM-HH:MM" (24-hour clock, the hour may have one digit, the
// minute has two). Case and surrounding spaces are ignored. An empty string
// is Now, the default.
func ParsePolicy(s string) (Policy, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "", "now":
		return Policy{Kind: Now}, nil
	case "on-restart":
		return Policy{Kind: OnRestart}, nil
	case "manual":
		return Policy{Kind: Manual}, nil
	}
	var p Policy
	if clock, ok := strings.CutPrefix(t, "at="); ok {
		h, m, err := parseClock(clock)
		if err != nil {
			return Policy{}, fmt.Errorf("%w %q: %w", ErrBadPolicy, s, err)
		}
		p = Policy{Kind: At, Hour: h, Minute: m}
	} else if span, ok := strings.CutPrefix(t, "window="); ok {
		from, to, ok := strings.Cut(span, "-")
		if !ok {
			return Policy{}, fmt.Errorf("%w %q: window must be HH:MM-HH:MM", ErrBadPolicy, s)
		}
		h, m, err := parseClock(from)
		if err != nil {
			return Policy{}, fmt.Errorf("%w %q: %w", ErrBadPolicy, s, err)
		}
		eh, em, err := parseClock(to)
		if err != nil {
			return Policy{}, fmt.Errorf("%w %q: %w", ErrBadPolicy, s, err)
		}
		p = Policy{Kind: Window, Hour: h, Minute: m, EndHour: eh, EndMinute: em}
	} else {
		return Policy{}, fmt.Errorf("%w %q: want now, on-restart, manual, at=HH:MM or window=HH:MM-HH:MM", ErrBadPolicy, s)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("%w %q: %w", ErrBadPolicy, s, err)
	}
	return p, nil
}

// parseClock reads H:MM or HH:MM (range checked by Validate).
func parseClock(clock string) (h, m int, err error) {
	hh, mm, ok := strings.Cut(clock, ":")
	if !ok || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 || !digits(hh) || !digits(mm) {
		return 0, 0, fmt.Errorf("time %q must be HH:MM", clock)
	}
	h, _ = strconv.Atoi(hh)
	m, _ = strconv.Atoi(mm)
	return h, m, nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Validate reports whether p can be applied: a known kind and, for At, an
// hour in 0..23 and a minute in 0..59.
func (p Policy) Validate() error {
	switch p.Kind {
	case Now, OnRestart, Manual:
		return nil
	case At:
		return checkClock(p.Hour, p.Minute)
	case Window:
		if err := checkClock(p.Hour, p.Minute); err != nil {
			return err
		}
		if err := checkClock(p.EndHour, p.EndMinute); err != nil {
			return err
		}
		if p.Hour == p.EndHour && p.Minute == p.EndMinute {
			return errors.New("empty window: start and end are equal")
		}
		return nil
	}
	return fmt.Errorf("unknown policy kind %d", int(p.Kind))
}

func checkClock(h, m int) error {
	if h < 0 || h > 23 {
		return fmt.Errorf("hour %d out of range 0..23", h)
	}
	if m < 0 || m > 59 {
		return fmt.Errorf("minute %d out of range 0..59", m)
	}
	return nil
}

// String returns the text ParsePolicy reads back.
func (p Policy) String() string {
	switch p.Kind {
	case Now:
		return "now"
	case OnRestart:
		return "on-restart"
	case At:
		return fmt.Sprintf("at=%02d:%02d", p.Hour, p.Minute)
	case Window:
		return fmt.Sprintf("window=%02d:%02d-%02d:%02d", p.Hour, p.Minute, p.EndHour, p.EndMinute)
	case Manual:
		return "manual"
	}
	return fmt.Sprintf("policy(%d)", int(p.Kind))
}

// Restarts reports whether the policy re-executes the process after the
// swap (all but OnRestart do).
func (p Policy) Restarts() bool { return p.Kind != OnRestart }

// NextApply returns when to swap (and, unless OnRestart, re-execute) a
// release verified at now. Now and OnRestart return now: OnRestart defers
// only the restart, never the swap.
//
// For At it returns the first instant at or after now at which the wall
// clock of now.Location() reads Hour:Minute:00, so a release verified at
// 23:59 for at=00:01 is applied two minutes later, on the next day, and one
// verified at exactly HH:MM:00 is applied at once. Days on which the clock
// changes are handled as a user of a wall clock expects:
//
//   - when the clock jumps over HH:MM (spring forward), the release is
//     applied at the instant of the jump, the first moment after the time
//     it would have been;
//   - when HH:MM happens twice (fall back), the first occurrence at or after
//     now is taken.
//
// For Window it returns now when the wall clock of now.Location() reads a
// time inside the window (start included, end excluded; a window that ends
// before it starts runs across midnight), else the next start of the window
// as At computes it. Inside is judged by the wall clock, so on a day the
// clock changes the window keeps its wall-clock bounds: it is an hour
// shorter or longer in real time. A window that lies wholly in the hour a
// clock skips opens for the instant of the jump.
//
// Manual never applies by itself: it returns the zero time.
//
// An invalid Policy (see Validate) is applied now.
func (p Policy) NextApply(now time.Time) time.Time {
	if p.Validate() != nil {
		return now
	}
	switch p.Kind {
	case Manual:
		return time.Time{}
	case Window:
		if p.inWindow(now) {
			return now
		}
	case At:
	default:
		return now
	}
	loc := now.Location()
	y, m, d := now.Date()
	var best time.Time
	// The next occurrence is at most about two days away, even on a day
	// the zone skips; look at four days to be safe.
	for i := range 4 {
		for _, c := range p.occurrences(y, m, d+i, loc) {
			if c.Before(now) {
				continue
			}
			if best.IsZero() || c.Before(best) {
				best = c
			}
		}
		if !best.IsZero() {
			return best
		}
	}
	// Unreachable for any real zone; applying now is the safe answer.
	return now
}

// inWindow reports whether now's wall clock is inside the window.
func (p Policy) inWindow(now time.Time) bool {
	m := now.Hour()*60 + now.Minute()
	start, end := p.Hour*60+p.Minute, p.EndHour*60+p.EndMinute
	if start < end {
		return start <= m && m < end
	}
	return m >= start || m < end
}

// occurrences returns the instants of day (y, m, d) in loc whose wall clock
// reads p.Hour:p.Minute, or, if the zone skips that time on that day, the
// instant the clock jumps over it.
func (p Policy) occurrences(y int, m time.Month, d int, loc *time.Location) []time.Time {
	c := time.Date(y, m, d, p.Hour, p.Minute, 0, 0, loc)
	matches := func(t time.Time) bool {
		return t.Hour() == p.Hour && t.Minute() == p.Minute && t.Second() == 0
	}
	start, end := c.ZoneBounds()
	if !matches(c) {
		// A gap: time.Date normalised the missing wall time into one of
		// the zones around it. The jump is the bound between them.
		wall := time.Date(y, m, d, p.Hour, p.Minute, 0, 0, time.UTC)
		got := time.Date(c.Year(), c.Month(), c.Day(), c.Hour(), c.Minute(), c.Second(), 0, time.UTC)
		if got.After(wall) && !start.IsZero() {
			return []time.Time{start}
		}
		if !end.IsZero() {
			return []time.Time{end}
		}
		return nil
	}
	out := []time.Time{c}
	_, off := c.Zone()
	// The same wall time may also exist in the zone before or after c's
	// (a repeated hour).
	if !start.IsZero() {
		_, prev := start.Add(-time.Nanosecond).Zone()
		if alt := c.Add(time.Duration(off-prev) * time.Second); alt.Before(start) && matches(alt) {
			out = append(out, alt)
		}
	}
	if !end.IsZero() {
		_, next := end.Zone()
		if alt := c.Add(time.Duration(off-next) * time.Second); !alt.Before(end) && matches(alt) {
			out = append(out, alt)
		}
	}
	return out
}

// MarshalText returns String's text, for JSON and other text encodings.
func (p Policy) MarshalText() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads what ParsePolicy reads.
func (p *Policy) UnmarshalText(b []byte) error {
	q, err := ParsePolicy(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Set makes *Policy a flag.Value: flag.Var(&cfg.Apply, "apply", "now, on-restart, manual, at=HH:MM or window=HH:MM-HH:MM").
func (p *Policy) Set(s string) error { return p.UnmarshalText([]byte(s)) }
