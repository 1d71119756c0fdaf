// Package units parses and prints the sizes, rates and durations that rpe's
// command line and configuration files take from people: "256KiB", "10MB",
// "8Mbit/s", "90d". Binary prefixes (Ki, Mi, Gi, Ti) are powers of 1024,
// decimal ones (k, M, G, T) powers of 1000, as in IEC 80000-13.
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is matched by every parse error.
var ErrSyntax = errors.New("invalid value")

// prefix multipliers, matched case-insensitively except that "m" and "M"
// are both mega (there is no milli-byte).
var prefixes = map[string]float64{
	"":   1,
	"k":  1e3,
	"m":  1e6,
	"g":  1e9,
	"t":  1e12,
	"ki": 1 << 10,
	"mi": 1 << 20,
	"gi": 1 << 30,
	"ti": 1 << 40,
}

// splitNumber splits "1.5MiB" into 1.5 and "MiB" (spaces between allowed).
func splitNumber(s string) (float64, string, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, "", fmt.Errorf("%w %q: want a number first", ErrSyntax, s)
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, "", fmt.Errorf("%w %q: bad number %q", ErrSyntax, s, s[:i])
	}
	return v, strings.TrimSpace(s[i:]), nil
}

// ParseSize parses a byte count: a non-negative number and an optional unit
// B, kB, KiB, MB, MiB, GB, GiB, TB or TiB (case-insensitive; the B may be
// left out: "256Ki", "10M"). The result must be a whole number of bytes.
func ParseSize(s string) (int64, error) {
	v, unit, err := splitNumber(s)
	if err != nil {
		return 0, err
	}
	mul, ok := sizeUnit(unit)
	if !ok {
		return 0, fmt.Errorf("%w size %q: unknown unit %q (use B, kB, KiB, MB, MiB, GB, GiB, TB, TiB)", ErrSyntax, s, unit)
	}
	return toInt(s, "size", v*mul)
}

func sizeUnit(unit string) (float64, bool) {
	u := strings.ToLower(unit)
	u = strings.TrimSuffix(u, "b")
	mul, ok := prefixes[u]
	return mul, ok
}

func toInt(s, what string, f float64) (int64, error) {
	if f >= math.MaxInt64 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%w %s %q: too large", ErrSyntax, what, s)
	}
	if f != math.Trunc(f) {
		return 0, fmt.Errorf("%w %s %q: not a whole number of bytes", ErrSyntax, what, s)
	}
	return int64(f), nil
}

// ParseRate parses a data rate and returns it in bytes per second. Byte
// rates are a size per second ("10MiB/s", "500kB/s", "1GB/s"); bit rates use
// "bit/s" or "bps" ("8Mbit/s", "100Mbps", "1Gbps"). Fractions of a byte per
// second are rounded down.
func ParseRate(s string) (int64, error) {
	v, unit, err := splitNumber(s)
	if err != nil {
		return 0, err
	}
	u := strings.ToLower(unit)
	var bits bool
	switch {
	case strings.HasSuffix(u, "bit/s"):
		u, bits = strings.TrimSuffix(u, "bit/s"), true
	case strings.HasSuffix(u, "bps"):
		u, bits = strings.TrimSuffix(u, "bps"), true
	case strings.HasSuffix(u, "/s"):
		u = strings.TrimSuffix(strings.TrimSuffix(u, "/s"), "b")
	default:
		return 0, fmt.Errorf("%w rate %q: want a unit per second, such as MiB/s or Mbit/s", ErrSyntax, s)
	}
	mul, ok := prefixes[u]
	if !ok {
		return 0, fmt.Errorf("%w rate %q: unknown unit %q", ErrSyntax, s, unit)
	}
	f := v * mul
	if bits {
		f /= 8
	}
	return toInt(s, "rate", math.Floor(f))
}

// ParseDuration parses a duration as time.ParseDuration does, and also
// accepts the units d (24h) and w (7d), alone or mixed: "90d", "1w2d12h".
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var total time.Duration
	for {
		i := strings.IndexAny(t, "dw")
		if i < 0 {
			break
		}
		num := t[:i]
		// The number is the digits just before the unit.
		j := len(num)
		for j > 0 && (num[j-1] >= '0' && num[j-1] <= '9' || num[j-1] == '.') {
			j--
		}
		if j != 0 || j == len(num) {
			return 0, fmt.Errorf("%w duration %q: put days and weeks first (\"1w2d3h\")", ErrSyntax, s)
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("%w duration %q", ErrSyntax, s)
		}
		unit := 24 * time.Hour
		if t[i] == 'w' {
			unit *= 7
		}
		if v*float64(unit) >= math.MaxInt64 {
			return 0, fmt.Errorf("%w duration %q: too long", ErrSyntax, s)
		}
		total += time.Duration(v * float64(unit))
		t = t[i+1:]
	}
	if t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, fmt.Errorf("%w duration %q (use e.g. 90d, 36h, 15m)", ErrSyntax, s)
		}
		if (d > 0 && total > math.MaxInt64-d) || d < 0 && total > 0 {
			return 0, fmt.Errorf("%w duration %q", ErrSyntax, s)
		}
		total += d
	}
	if s == "" || strings.TrimSpace(s) == "" {
		return 0, fmt.Errorf("%w duration: empty", ErrSyntax)
	}
	return total, nil
}

// FormatSize writes n bytes with a binary prefix and up to one decimal:
// "512 B", "256 KiB", "1.5 GiB".
func FormatSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 && n > -1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	i := -1
	for math.Abs(f) >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[i:i+1] + "iB"
}

// FormatRate writes a rate in bytes per second, as FormatSize does, with "/s".
func FormatRate(bytesPerSecond int64) string { return FormatSize(bytesPerSecond) + "/s" }
