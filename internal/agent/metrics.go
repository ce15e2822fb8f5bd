package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tabbynet/tabby/internal/cni"
)

// metrics are the agent's Prometheus metrics, in a registry of its own so
// several agents can live in one test process.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	endpoints    prometheus.Gauge
	syncDuration prometheus.Histogram
	syncErrors   prometheus.Counter
	syncSkipped  prometheus.Counter
	syncs        *prometheus.CounterVec
	gcReleased   prometheus.Counter
	quarantined  *prometheus.GaugeVec
	table        *prometheus.GaugeVec
	gcPasses     *prometheus.CounterVec
	badRecords   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_cni_requests_total", Help: "CNI requests served, by command and result code (0 = success).",
		}, []string{"command", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tabby_cni_request_duration_seconds", Help: "Time to serve a CNI request.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"command"}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tabby_local_endpoints", Help: "Workload endpoints attached on this node.",
		}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tabby_dataplane_sync_duration_seconds", Help: "Time to compute and program the dataplane.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_dataplane_sync_errors_total", Help: "Dataplane syncs that failed.",
		}),
		syncSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_dataplane_resyncs_skipped_total", Help: "Periodic resyncs skipped: nothing changed and the kernel was untouched.",
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_dataplane_syncs_total", Help: "Dataplane syncs, by path: full (view, compile, diff) or incremental (remote endpoint and network set changes as set elements).",
		}, []string{"path"}),
		gcReleased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_ipam_gc_released_total", Help: "Leaked addresses released by GC.",
		}),
		quarantined: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tabby_agent_policy_quarantined", Help: "1 for each policy or profile this agent could not compile (the endpoints it selects fail closed).",
		}, []string{"policy"}),
		table: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tabby_agent_policy_table", Help: "What the last programmed nftables table holds: policies (policies and profiles applying to this host's endpoints), chains, rules.",
		}, []string{"what"}),
		gcPasses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_ipam_gc_passes_total", Help: "IPAM GC passes run, by scope (node: this node's blocks; cluster: the elected agent's cluster-wide pass).",
		}, []string{"scope"}),
		badRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_datastore_bad_records_total", Help: "Datastore records skipped because they cannot be decoded, by kind (each key and revision counted once).",
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.endpoints, m.syncDuration, m.syncErrors, m.syncSkipped, m.syncs, m.gcReleased, m.quarantined, m.table, m.gcPasses, m.badRecords,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RegisterMetrics adds collectors (e.g. the router's) to the agent's
// metrics. Call it before Run.
func (a *Agent) RegisterMetrics(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := a.m.reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) observe(cmd string, start time.Time, err error) {
	code := "0"
	if err != nil {
		code = itoa(cni.CodeOf(err, 999))
	}
	m.requests.WithLabelValues(cmd, code).Inc()
	m.latency.WithLabelValues(cmd).Observe(time.Since(start).Seconds())
}

func itoa(n uint) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// httpHandler serves /livez, /readyz, /metrics and the cache (CachePath).
func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() || !a.synced.Load() {
			http.Error(w, "not ready: starting, or the dataplane has not been programmed yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+CachePath, a.serveCache)
	for path, h := range a.extraHandlers {
		mux.Handle(path, h)
	}
	return mux
}
