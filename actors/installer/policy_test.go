package installer

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin and friends even without a system zoneinfo.
)

func TestParsePolicy(t *testing.T) {
	ok := []struct {
		in   string
		want Policy
		str  string
	}{
		{"", Policy{Kind: Now}, "now"},
		{"now", Policy{Kind: Now}, "now"},
		{"  NOW ", Policy{Kind: Now}, "now"},
		{"on-restart", Policy{Kind: OnRestart}, "on-restart"},
		{"at=03:30", Policy{Kind: At, Hour: 3, Minute: 30}, "at=03:30"},
		{"at=3:05", Policy{Kind: At, Hour: 3, Minute: 5}, "at=03:05"},
		{"AT=23:59", Policy{Kind: At, Hour: 23, Minute: 59}, "at=23:59"},
		{"at=00:00", Policy{Kind: At}, "at=00:00"},
	}
	for _, c := range ok {
		got, err := ParsePolicy(c.in)
		if err != nil {
			t.Errorf("ParsePolicy(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParsePolicy(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if got.String() != c.str {
			t.Errorf("ParsePolicy(%q).String() = %q, want %q", c.in, got.String(), c.str)
		}
		back, err := ParsePolicy(got.String())
		if err != nil || back != got {
			t.Errorf("round trip of %q: %+v, %v", c.in, back, err)
		}
	}
	bad := []string{
		"later", "at", "at=", "at=24:00", "at=12:60", "at=-1:00", "at=1:5",
		"at=123:00", "at=12:345", "at=12", "at=aa:bb", "at 12:00", "at=12:00x",
		"at=+1:00", "at=12:0", "on_restart", "at=１２:00",
	}
	for _, in := range bad {
		p, err := ParsePolicy(in)
		if err == nil {
			t.Errorf("ParsePolicy(%q) = %+v, want an error", in, p)
			continue
		}
		if !errors.Is(err, ErrBadPolicy) {
			t.Errorf("ParsePolicy(%q) error %v is not ErrBadPolicy", in, err)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []Policy{{Kind: At, Hour: 24}, {Kind: At, Minute: -1}, {Kind: 7}} {
		if p.Validate() == nil {
			t.Errorf("%+v validated", p)
		}
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		if got := p.NextApply(now); !got.Equal(now) {
			t.Errorf("invalid %+v: NextApply = %v, want now", p, got)
		}
	}
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func TestNextApply(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	utc := time.UTC
	plus5 := time.FixedZone("X", 5*3600+30*60)
	at := func(h, m int) Policy { return Policy{Kind: At, Hour: h, Minute: m} }
	d := func(loc *time.Location, y int, mo time.Month, dd, h, mi, s int) time.Time {
		return time.Date(y, mo, dd, h, mi, s, 0, loc)
	}
	// u is an instant given in UTC, for the DST cases where a wall time is
	// ambiguous or missing.
	u := func(y int, mo time.Month, dd, h, mi int) time.Time { return time.Date(y, mo, dd, h, mi, 0, 0, utc) }
	cases := []struct {
		name string
		p    Policy
		now  time.Time
		want time.Time
	}{
		{"now", Policy{Kind: Now}, d(utc, 2026, 5, 1, 12, 0, 7), d(utc, 2026, 5, 1, 12, 0, 7)},
		{"on-restart swaps now", Policy{Kind: OnRestart}, d(utc, 2026, 5, 1, 12, 0, 7), d(utc, 2026, 5, 1, 12, 0, 7)},
		{"later today", at(3, 0), d(utc, 2026, 5, 1, 1, 0, 0), d(utc, 2026, 5, 1, 3, 0, 0)},
		{"tomorrow", at(3, 0), d(utc, 2026, 5, 1, 4, 0, 0), d(utc, 2026, 5, 2, 3, 0, 0)},
		{"across midnight", at(0, 1), d(utc, 2026, 5, 1, 23, 59, 0), d(utc, 2026, 5, 2, 0, 1, 0)},
		{"across month and year", at(0, 1), d(utc, 2026, 12, 31, 23, 59, 30), d(utc, 2027, 1, 1, 0, 1, 0)},
		{"across Feb 29", at(0, 0), d(utc, 2028, 2, 28, 12, 0, 0), d(utc, 2028, 2, 29, 0, 0, 0)},
		{"exactly now", at(12, 0), d(utc, 2026, 5, 1, 12, 0, 0), d(utc, 2026, 5, 1, 12, 0, 0)},
		{"same minute, seconds past", at(12, 0), d(utc, 2026, 5, 1, 12, 0, 1), d(utc, 2026, 5, 2, 12, 0, 0)},
		{"a nanosecond early", at(12, 0), d(utc, 2026, 5, 1, 12, 0, 0).Add(-1), d(utc, 2026, 5, 1, 12, 0, 0)},
		{"one minute past", at(23, 58), d(utc, 2026, 5, 1, 23, 59, 0), d(utc, 2026, 5, 2, 23, 58, 0)},
		{"odd fixed zone", at(0, 1), d(plus5, 2026, 5, 1, 23, 59, 0), d(plus5, 2026, 5, 2, 0, 1, 0)},
		{"Berlin summer", at(3, 30), d(berlin, 2026, 7, 1, 22, 0, 0), d(berlin, 2026, 7, 2, 3, 30, 0)},
		// 2026-03-29: clocks jump 02:00 CET -> 03:00 CEST (01:00 UTC).
		{"spring: day before to after jump", at(3, 30), d(berlin, 2026, 3, 28, 4, 0, 0), u(2026, 3, 29, 1, 30)},
		{"spring: across the jump", at(4, 0), d(berlin, 2026, 3, 29, 1, 30, 0), u(2026, 3, 29, 2, 0)},
		{"spring: missing time runs at the jump", at(2, 30), d(berlin, 2026, 3, 28, 23, 0, 0), u(2026, 3, 29, 1, 0)},
		{"spring: missing 02:00 runs at the jump", at(2, 0), d(berlin, 2026, 3, 29, 0, 0, 0), u(2026, 3, 29, 1, 0)},
		{"spring: missing time, past the jump", at(2, 30), u(2026, 3, 29, 1, 10).In(berlin), d(berlin, 2026, 3, 30, 2, 30, 0)},
		{"spring: 01:59 still exists", at(1, 59), d(berlin, 2026, 3, 29, 0, 0, 0), u(2026, 3, 29, 0, 59)},
		{"spring: 03:00 is the jump", at(3, 0), d(berlin, 2026, 3, 29, 0, 0, 0), u(2026, 3, 29, 1, 0)},
		// 2026-10-25: clocks go back 03:00 CEST -> 02:00 CET (01:00 UTC);
		// 02:00..02:59 happens twice.
		{"autumn: first of two", at(2, 30), d(berlin, 2026, 10, 25, 0, 0, 0), u(2026, 10, 25, 0, 30)},
		{"autumn: second of two", at(2, 30), u(2026, 10, 25, 0, 45).In(berlin), u(2026, 10, 25, 1, 30)},
		{"autumn: both past", at(2, 30), u(2026, 10, 25, 1, 45).In(berlin), d(berlin, 2026, 10, 26, 2, 30, 0)},
		{"autumn: across the change", at(1, 0), d(berlin, 2026, 10, 24, 23, 0, 0), u(2026, 10, 24, 23, 0)},
		{"autumn: after the change", at(4, 0), d(berlin, 2026, 10, 25, 0, 0, 0), u(2026, 10, 25, 3, 0)},
	}
	for _, c := range cases {
		got := c.p.NextApply(c.now)
		if !got.Equal(c.want) {
			t.Errorf("%s: %v.NextApply(%v) = %v (%v), want %v (%v)", c.name, c.p, c.now, got, got.UTC(), c.want, c.want.UTC())
		}
		if got.Before(c.now) {
			t.Errorf("%s: NextApply %v is before now %v", c.name, got, c.now)
		}
	}
}

// TestNextApplyEveryMinute checks, for every minute of two Berlin days with
// clock changes and a normal one, that the answer is never in the past, is
// at most 25 hours away and reads the asked wall time unless the zone skips
// it.
func TestNextApplyEveryMinute(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	for _, day := range []time.Time{
		time.Date(2026, 3, 29, 0, 0, 0, 0, berlin),
		time.Date(2026, 10, 25, 0, 0, 0, 0, berlin),
		time.Date(2026, 6, 1, 0, 0, 0, 0, berlin),
	} {
		for _, p := range []Policy{{Kind: At, Hour: 2, Minute: 30}, {Kind: At, Hour: 0, Minute: 1}, {Kind: At, Hour: 23, Minute: 59}} {
			for now := day.Add(-2 * time.Hour); now.Before(day.Add(26 * time.Hour)); now = now.Add(7 * time.Minute) {
				got := p.NextApply(now)
				if got.Before(now) || got.Sub(now) > 25*time.Hour {
					t.Fatalf("%v.NextApply(%v) = %v", p, now, got)
				}
				inGap := got.Hour() == 3 && got.Minute() == 0 && p.Hour == 2
				if !inGap && (got.Hour() != p.Hour || got.Minute() != p.Minute || got.Second() != 0) {
					t.Fatalf("%v.NextApply(%v) = %v reads the wrong time", p, now, got)
				}
				// Nothing between now and got reads the asked time.
				for x := now.Truncate(time.Minute); x.Before(got); x = x.Add(time.Minute) {
					if !x.Before(now) && x.Hour() == p.Hour && x.Minute() == p.Minute {
						t.Fatalf("%v.NextApply(%v) = %v skips %v", p, now, got, x)
					}
				}
			}
		}
	}
}

func TestPolicyTextAndFlag(t *testing.T) {
	var cfg struct {
		Apply Policy `json:"apply"`
	}
	if err := json.Unmarshal([]byte(`{"apply":"at=04:05"}`), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Apply != (Policy{Kind: At, Hour: 4, Minute: 5}) {
		t.Errorf("json: %+v", cfg.Apply)
	}
	b, err := json.Marshal(cfg)
	if err != nil || string(b) != `{"apply":"at=04:05"}` {
		t.Errorf("json encode: %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"apply":"soon"}`), &cfg); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("json bad policy: %v", err)
	}
	if _, err := json.Marshal(Policy{Kind: At, Hour: 25}); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("json encode of an invalid policy: %v", err)
	}

	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var p Policy
	fs.Var(&p, "apply", "when to apply")
	if err := fs.Parse([]string{"-apply", "on-restart"}); err != nil || p.Kind != OnRestart {
		t.Errorf("flag: %+v, %v", p, err)
	}
	if err := fs.Parse([]string{"-apply", "at=25:00"}); err == nil {
		t.Error("flag accepted at=25:00")
	}
}

func TestParseWindowAndManual(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Policy
		str  string
	}{
		{"window=22:00-02:00", Policy{Kind: Window, Hour: 22, EndHour: 2}, "window=22:00-02:00"},
		{"WINDOW=1:30-4:05", Policy{Kind: Window, Hour: 1, Minute: 30, EndHour: 4, EndMinute: 5}, "window=01:30-04:05"},
		{"manual", Policy{Kind: Manual}, "manual"},
	} {
		got, err := ParsePolicy(c.in)
		if err != nil || got != c.want || got.String() != c.str {
			t.Errorf("ParsePolicy(%q) = %+v %q, %v; want %+v %q", c.in, got, got.String(), err, c.want, c.str)
		}
		if back, err := ParsePolicy(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %+v, %v", c.in, back, err)
		}
	}
	for _, in := range []string{"window=", "window=22:00", "window=22:00-22:00", "window=22:00-24:00", "window=2200-0200", "window=22:00-02:00-03:00", "manually"} {
		if p, err := ParsePolicy(in); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want ErrBadPolicy", in, p, err)
		}
	}
}

// TestNextApplyWindow: inside the window (start included, end excluded) a
// release applies at once; outside, at the window's next start. Windows
// cross midnight, and keep their wall-clock bounds across a DST change.
func TestNextApplyWindow(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	utc := time.UTC
	w := func(h, m, eh, em int) Policy {
		return Policy{Kind: Window, Hour: h, Minute: m, EndHour: eh, EndMinute: em}
	}
	d := func(loc *time.Location, y int, mo time.Month, dd, h, mi int) time.Time {
		return time.Date(y, mo, dd, h, mi, 0, 0, loc)
	}
	u := func(y int, mo time.Month, dd, h, mi int) time.Time { return time.Date(y, mo, dd, h, mi, 0, 0, utc) }
	cases := []struct {
		name string
		p    Policy
		now  time.Time
		want time.Time
	}{
		{"inside", w(1, 0, 4, 0), d(utc, 2026, 5, 1, 2, 0), d(utc, 2026, 5, 1, 2, 0)},
		{"at the start", w(1, 0, 4, 0), d(utc, 2026, 5, 1, 1, 0), d(utc, 2026, 5, 1, 1, 0)},
		{"at the end: tomorrow", w(1, 0, 4, 0), d(utc, 2026, 5, 1, 4, 0), d(utc, 2026, 5, 2, 1, 0)},
		{"before: later today", w(1, 0, 4, 0), d(utc, 2026, 5, 1, 0, 30), d(utc, 2026, 5, 1, 1, 0)},
		// 23:59 -> 00:01: a window opening at 00:01 is taken the next day,
		// two minutes later.
		{"23:59 to a window at 00:01", w(0, 1, 3, 0), d(utc, 2026, 5, 1, 23, 59), d(utc, 2026, 5, 2, 0, 1)},
		{"crossing midnight: before midnight", w(23, 0, 1, 0), d(utc, 2026, 5, 1, 23, 59), d(utc, 2026, 5, 1, 23, 59)},
		{"crossing midnight: after midnight", w(23, 0, 1, 0), d(utc, 2026, 5, 2, 0, 1), d(utc, 2026, 5, 2, 0, 1)},
		{"crossing midnight: after its end", w(23, 0, 1, 0), d(utc, 2026, 5, 2, 1, 0), d(utc, 2026, 5, 2, 23, 0)},
		{"crossing midnight: new year", w(23, 30, 0, 30), d(utc, 2026, 12, 31, 12, 0), d(utc, 2026, 12, 31, 23, 30)},
		// New York, 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC).
		{"spring: window opens at the jump", w(2, 30, 4, 0), d(ny, 2026, 3, 8, 1, 0), u(2026, 3, 8, 7, 0)},
		{"spring: inside after the jump", w(1, 0, 4, 0), u(2026, 3, 8, 7, 30).In(ny), u(2026, 3, 8, 7, 30)},
		{"spring: after the shortened window", w(1, 0, 4, 0), d(ny, 2026, 3, 8, 4, 0), d(ny, 2026, 3, 9, 1, 0)},
		// New York, 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC); 01:xx twice.
		{"autumn: inside the first 01:30", w(1, 0, 2, 0), u(2026, 11, 1, 5, 30).In(ny), u(2026, 11, 1, 5, 30)},
		{"autumn: inside the second 01:30", w(1, 0, 2, 0), u(2026, 11, 1, 6, 30).In(ny), u(2026, 11, 1, 6, 30)},
		{"autumn: before opens at the first 01:00", w(1, 0, 2, 0), d(ny, 2026, 11, 1, 0, 30), u(2026, 11, 1, 5, 0)},
	}
	for _, c := range cases {
		got := c.p.NextApply(c.now)
		if !got.Equal(c.want) {
			t.Errorf("%s: %v.NextApply(%v) = %v (%v), want %v (%v)", c.name, c.p, c.now, got, got.UTC(), c.want, c.want.UTC())
		}
	}
	// Every minute of a year's two change days and a normal day: the answer
	// is never in the past, and its wall clock is inside the window (or at
	// a jump over the whole window).
	for _, day := range []time.Time{d(ny, 2026, 3, 8, 0, 0), d(ny, 2026, 11, 1, 0, 0), d(ny, 2026, 6, 1, 0, 0)} {
		for _, p := range []Policy{w(1, 30, 2, 30), w(23, 0, 2, 0), w(2, 10, 2, 50)} {
			for m := 0; m < 25*60; m++ {
				now := day.Add(time.Duration(m) * time.Minute)
				got := p.NextApply(now)
				if got.Before(now) || got.Sub(now) > 25*time.Hour {
					t.Fatalf("%v at %v: %v", p, now, got)
				}
				if !p.inWindow(got) {
					if _, end := got.Add(-time.Nanosecond).ZoneBounds(); !end.Equal(got) {
						t.Fatalf("%v at %v: %v is outside the window and no jump", p, now, got)
					}
				}
			}
		}
	}
}

func TestNextApplyManual(t *testing.T) {
	if got := (Policy{Kind: Manual}).NextApply(time.Now()); !got.IsZero() {
		t.Fatalf("manual NextApply = %v, want never (zero)", got)
	}
}
