package units

import (
	"errors"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1", 1}, {"100B", 100}, {"256KiB", 256 << 10}, {"256kib", 256 << 10}, {"256Ki", 256 << 10},
		{"16 MiB", 16 << 20}, {"1.5MiB", 3 << 19}, {"10kB", 10_000}, {"10K", 10_000}, {"3MB", 3_000_000},
		{"2G", 2e9}, {"8GiB", 8 << 30}, {"1TiB", 1 << 40}, {"1TB", 1e12},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "KiB", "-1", "1.5", "1.00001KiB", "10XB", "1e3", "99999999999TiB", "1..2", "12 parsecs"} {
		if _, err := ParseSize(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseSize(%q): %v, want ErrSyntax", bad, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"10MiB/s", 10 << 20}, {"500kB/s", 500_000}, {"1GB/s", 1e9}, {"100B/s", 100}, {"100/s", 100},
		{"8Mbit/s", 1e6}, {"100Mbps", 12_500_000}, {"1Gbps", 125_000_000}, {"1bps", 0}, {"64Kibit/s", 8192},
	} {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "10MiB", "fast", "10XB/s", "-1MB/s"} {
		if _, err := ParseRate(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseRate(%q): %v, want ErrSyntax", bad, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"90d", 90 * 24 * time.Hour}, {"1w", 7 * 24 * time.Hour}, {"1w2d3h", 9*24*time.Hour + 3*time.Hour},
		{"36h", 36 * time.Hour}, {"15m30s", 15*time.Minute + 30*time.Second}, {"0.5d", 12 * time.Hour},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "d", "3h2d", "soon", "10", "99999999w"} {
		if _, err := ParseDuration(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseDuration(%q): %v, want ErrSyntax", bad, err)
		}
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 512: "512 B", 1024: "1 KiB", 256 << 10: "256 KiB", 3 << 29: "1.5 GiB", 3_000_000: "2.9 MiB"} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
	if got := FormatRate(10 << 20); got != "10 MiB/s" {
		t.Errorf("FormatRate = %q", got)
	}
}
