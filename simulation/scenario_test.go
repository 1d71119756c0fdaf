package simulation

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestBound(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		name     string
		size, us int64
		up, down []int64
		want     float64
		ok       bool
	}{
		{"unlimited", 4 * MiB, 0, []int64{0, 0}, []int64{0, 0}, 0, false},
		{"publisher bound", 4 * MiB, MiB, []int64{0, 0}, []int64{0, 0}, 4, true},
		{"download bound", 4 * MiB, 0, []int64{0}, []int64{MiB / 2}, 8, true},
		// 300 nodes, all at 1 MiB/s: N·S/(u_s+Σu_i) = 300·4/301 < 4 = S/u_s.
		{"acceptance", 4 * MiB, MiB, fill(300, MiB), fill(300, 0), 4, true},
		// Slow uploaders: N·S/(u_s+Σu_i) = 100·4/(1+100/8) = 29.63.
		{"swarm bound", 4 * MiB, MiB, fill(100, MiB/8), fill(100, 0), 400 / 13.5, true},
	} {
		got, ok := Bound(tc.size, tc.us, tc.up, tc.down)
		if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Bound = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func fill(n int, v int64) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestPercentile(t *testing.T) {
	times := []float64{1, 2, 3, 4}
	if p := percentile(times, 4, 0.5); p == nil || *p != 2 {
		t.Errorf("p50 of 4 = %v, want 2", p)
	}
	if p := percentile(times, 4, 1); p == nil || *p != 4 {
		t.Errorf("p100 of 4 = %v, want 4", p)
	}
	// Only 4 of 5 nodes finished: there is no time by which all had.
	if p := percentile(times, 5, 1); p != nil {
		t.Errorf("p100 with a node missing = %v, want nil", *p)
	}
	if p := percentile(times, 5, 0.8); p == nil || *p != 4 {
		t.Errorf("p80 of 5 = %v, want 4", p)
	}
}

func TestPlanDeterministic(t *testing.T) {
	s := Scenario{Nodes: 50, Size: 1, Up: 1000, Down: 2000, RateSpread: 0.5, Churn: 0.2, Hostile: 0.1, Seed: 7}
	a, b := s.plan(), s.plan()
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different plans")
	}
	s.Seed = 8
	if c := s.plan(); reflect.DeepEqual(a.up, c.up) {
		t.Fatal("different seeds, same rates")
	}
	churned := 0
	for _, c := range a.churn {
		if c.at > 0 {
			churned++
			if c.at < 0.2 || c.at > 0.7 || c.down <= 0 {
				t.Errorf("churn plan %+v out of range", c)
			}
		}
	}
	if churned != 10 || len(a.hostile) != 5 {
		t.Errorf("churned %d, hostile %d; want 10, 5", churned, len(a.hostile))
	}
	for i, u := range a.up {
		if u < 500 || u > 1500 {
			t.Errorf("node %d up %d outside 1000±50%%", i, u)
		}
	}
}

func TestScenarioRejected(t *testing.T) {
	for _, s := range []Scenario{
		{Nodes: 0, Size: 1},
		{Nodes: 1, Size: 0},
		{Nodes: 1, Size: 1, Loss: 0.7},
		{Nodes: 1, Size: 1, Churn: 1.5},
		{Nodes: 1, Size: 1, Up: -1},
		{Nodes: 1, Size: 1, RateSpread: 1},
	} {
		if _, err := s.populate(); !errors.Is(err, ErrBadScenario) {
			t.Errorf("%+v: err %v, want ErrBadScenario", s, err)
		}
	}
}

func TestSeriesAndPlot(t *testing.T) {
	r := &Report{Nodes: 4, Completed: 3, SizeBytes: 1 << 20, TMinS: ptr(1.5), TAllS: nil, Clock: "real"}
	r.Series = series([]float64{2, 3, 3}, []float64{0.5, 0.5, 1, 1}, 4)
	last := r.Series[len(r.Series)-1]
	if last.T != 3 || last.Verified != 0.75 || last.Aware != 1 {
		t.Fatalf("last point %+v, want t=3 verified=0.75 aware=1", last)
	}
	for i := 1; i < len(r.Series); i++ {
		if r.Series[i].T <= r.Series[i-1].T {
			t.Fatalf("series not strictly increasing in time: %+v", r.Series)
		}
	}
	var b bytes.Buffer
	if err := WritePlot(&b, r); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); !strings.HasPrefix(strings.TrimSpace(s), "<?xml") || !strings.Contains(s, "<svg") {
		t.Fatalf("not an SVG: %.100q", s)
	}
}
