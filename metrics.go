package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// counters are the event counts the metrics report; the rest comes from
// Status at each scrape.
type counters struct {
	releasesSeen, chunksRefused, installs, rollbacks atomic.Int64
}

// count updates the counters for an event the engine emits.
func (c *counters) count(ev Event) {
	switch ev := ev.(type) {
	case ReleaseFound:
		c.releasesSeen.Add(1)
	case Refused:
		if ev.What == RefusedChunk {
			c.chunksRefused.Add(1)
		}
	case Installed:
		c.installs.Add(1)
	case RolledBack:
		c.rollbacks.Add(1)
	}
}

// metricsServer serves /metrics (Prometheus text format, from a registry
// of this engine's own: never the global one, since many engines share a
// process) and /status (Status as JSON).
type metricsServer struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// metricDesc is one metric read from Status or the counters at scrape time.
type metricDesc struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(Status, *counters) float64
}

// engineCollector reads an engine's figures at each scrape.
type engineCollector struct {
	e     *Engine
	descs []metricDesc
}

func newEngineCollector(e *Engine) *engineCollector {
	labels := prometheus.Labels{"app": e.cfg.App, "channel": e.cfg.Channel}
	d := func(name, help string, kind prometheus.ValueType, v func(Status, *counters) float64) metricDesc {
		return metricDesc{prometheus.NewDesc("rpe_"+name, help, nil, labels), kind, v}
	}
	return &engineCollector{e: e, descs: []metricDesc{
		d("releases_seen_total", "Newer releases the signed record named.", prometheus.CounterValue,
			func(_ Status, c *counters) float64 { return float64(c.releasesSeen.Load()) }),
		d("uploaded_bytes_total", "Chunk bytes served to peers.", prometheus.CounterValue,
			func(s Status, _ *counters) float64 { return float64(s.Uploaded) }),
		d("downloaded_bytes_total", "Chunk bytes received from peers.", prometheus.CounterValue,
			func(s Status, _ *counters) float64 { return float64(s.Fetched) }),
		d("wasted_bytes_total", "Duplicate and refused chunk bytes received.", prometheus.CounterValue,
			func(s Status, _ *counters) float64 { return float64(s.Wasted) }),
		d("peers", "Peers of the download in progress.", prometheus.GaugeValue,
			func(s Status, _ *counters) float64 { return float64(s.Peers) }),
		d("dht_nodes", "Nodes in the DHT routing table.", prometheus.GaugeValue,
			func(s Status, _ *counters) float64 { return float64(s.DHTNodes) }),
		d("chunk_refusals_total", "Chunks refused because their bytes did not match the manifest.", prometheus.CounterValue,
			func(_ Status, c *counters) float64 { return float64(c.chunksRefused.Load()) }),
		d("installs_total", "Releases installed over the target.", prometheus.CounterValue,
			func(_ Status, c *counters) float64 { return float64(c.installs.Load()) }),
		d("rollbacks_total", "New versions that failed their trial and were rolled back.", prometheus.CounterValue,
			func(_ Status, c *counters) float64 { return float64(c.rollbacks.Load()) }),
		d("stage_restarts_total", "Stages restarted by their supervisor.", prometheus.CounterValue,
			func(s Status, _ *counters) float64 { return float64(s.Restarts) }),
		d("stages_stopped", "Stages stopped for good after failing too often.", prometheus.GaugeValue,
			func(s Status, _ *counters) float64 { return float64(len(s.Stopped)) }),
	}}
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Status()
	for _, d := range c.descs {
		ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(s, &c.e.counters))
	}
}

// serveMetrics starts the metrics server on addr.
func serveMetrics(e *Engine, addr string) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(newEngineCollector(e)); err != nil {
		return nil, fmt.Errorf("engine: metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("engine: metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(e.Status())
	})
	m := &metricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.cfg.Logger.Warn("engine: metrics server", "err", err)
		}
	}()
	return m, nil
}

// close stops the server and waits for it.
func (m *metricsServer) close(ctx context.Context) {
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}
