package simulation

import (
	"context"
	"testing"
	"time"
)

// benchScenario is the acceptance scenario of issue 5 with n nodes: a 4 MiB
// file, every node and the publisher uploading at 1 MiB/s, 10 ms one-way
// latency, no loss.
func benchScenario(n int) Scenario {
	return Scenario{
		Nodes: n, Size: 4 << 20, Up: 1 << 20, PublisherUp: 1 << 20, Seed: 1,
		Timeout: 15 * time.Minute,
	}
}

// reportMetrics hands a report's figures to the benchmark framework. A
// figure that does not exist (a percentile not reached) is reported as -1.
func reportMetrics(b *testing.B, r *Report) {
	f := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	b.ReportMetric(float64(r.Completed), "completed")
	b.ReportMetric(float64(r.BadInstalls), "bad_installs")
	b.ReportMetric(f(r.TMinS), "t_min_s")
	b.ReportMetric(f(r.TP50S), "t_p50_s")
	b.ReportMetric(f(r.TP90S), "t_p90_s")
	b.ReportMetric(f(r.TP99S), "t_p99_s")
	b.ReportMetric(f(r.TAllS), "t_all_s")
	b.ReportMetric(f(r.RatioToBound), "ratio_to_bound")
	b.ReportMetric(f(r.TAwareP99S), "t_aware_p99_s")
	b.ReportMetric(float64(r.PublisherUploadBytes)/float64(r.SizeBytes), "publisher_copies")
	b.ReportMetric(float64(r.TotalUploadBytes), "total_upload_bytes")
	b.ReportMetric(float64(r.WastedBytes), "wasted_bytes")
	b.ReportMetric(float64(r.PeakRSSBytes), "peak_rss_bytes")
	b.ReportMetric(float64(r.PeakRSSBytes)/float64(r.Nodes), "rss_bytes/node")
	b.ReportMetric(r.WallS, "wall_s")
}

// benchSim runs the scenario once per iteration (one iteration takes far
// longer than -benchtime, so b.N is 1), in virtual time unless real is set.
//
// testing/synctest.Test takes a *testing.T only, so a virtual run is handed
// to testing.RunTests as a one-test suite: the bubble then lives inside
// that test, and its report comes back here.
func benchSim(b *testing.B, n int, real bool) {
	var r *Report
	for b.Loop() {
		s := benchScenario(n)
		if real {
			rep, err := Run(context.Background(), s)
			if err != nil {
				b.Fatal(err)
			}
			r = &rep
			continue
		}
		r = nil
		ok := testing.RunTests(func(string, string) (bool, error) { return true, nil },
			[]testing.InternalTest{{Name: b.Name() + "/virtual", F: func(t *testing.T) { r = runVirtual(t, s) }}})
		if !ok || r == nil {
			b.Fatal("virtual run failed")
		}
	}
	b.Logf("%s clock\n%s", r.Clock, r.Summary())
	reportMetrics(b, r)
}

// Virtual time: the protocol's figures, independent of the machine.
func BenchmarkSim100(b *testing.B) { benchSim(b, 100, false) }
func BenchmarkSim300(b *testing.B) { benchSim(b, 300, false) }
func BenchmarkSim500(b *testing.B) { benchSim(b, 500, false) }

// Real time, as rpe sim runs: the figures include the machine's CPU.
func BenchmarkSimReal100(b *testing.B) { benchSim(b, 100, true) }
func BenchmarkSimReal300(b *testing.B) { benchSim(b, 300, true) }
func BenchmarkSimReal500(b *testing.B) { benchSim(b, 500, true) }

// BenchmarkSim10 is a quick check of the benchmark machinery.
func BenchmarkSim10(b *testing.B) { benchSim(b, 10, false) }
