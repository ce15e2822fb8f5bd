package dns

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Query results counted by tabby_dns_responses_total.
const (
	resultAnswer    = iota // records from our zones
	resultNodata           // the name exists, no records of that type
	resultNXDomain         // no such name in our zones
	resultForwarded        // relayed from an upstream
	resultServfail         // upstream failure, or not ready yet
	resultRefused          // forwarding off, non-IN class, zone transfer
	resultFormerr          // malformed query
	resultNotimp           // not a standard query
	numResults
)

var resultNames = [numResults]string{"answer", "nodata", "nxdomain", "forwarded", "servfail", "refused", "formerr", "notimp"}

// metrics are the Prometheus metrics of one server, in its own registry.
type metrics struct {
	reg       *prometheus.Registry
	responses [numResults]prometheus.Counter

	malformed       prometheus.Counter
	names           prometheus.Gauge
	serial          prometheus.Gauge
	warnings        prometheus.Gauge
	builds          prometheus.Counter
	buildSeconds    prometheus.Histogram
	ready           prometheus.Gauge
	mesosFetchOK    prometheus.Counter
	mesosFetchErr   prometheus.Counter
	mesosStale      prometheus.Gauge
	mesosLastOK     prometheus.Gauge
	dsEvents        *prometheus.CounterVec
	dsResyncs       prometheus.Counter
	dsSynced        prometheus.Gauge
	datastoreDecErr prometheus.Counter
	forwardDenied   prometheus.Counter
	forwardBusy     prometheus.Counter
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg}
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tabby_dns_responses_total",
		Help: "DNS responses by result: answer, nodata, nxdomain, forwarded, servfail, refused, formerr, notimp.",
	}, []string{"result"})
	for i, n := range resultNames {
		m.responses[i] = responses.WithLabelValues(n)
	}
	m.malformed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tabby_dns_malformed_queries_total", Help: "Packets that could not be parsed as a DNS query.",
	})
	m.names = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tabby_dns_names", Help: "Names with records in the served snapshot.",
	})
	m.serial = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tabby_dns_snapshot_serial", Help: "SOA serial of the served snapshot.",
	})
	m.warnings = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tabby_dns_snapshot_warnings", Help: "Items skipped while building the served snapshot (see the logs).",
	})
	m.builds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tabby_dns_snapshot_builds_total", Help: "Record snapshots built and published.",
	})
	m.buildSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tabby_dns_snapshot_build_seconds", Help: "Time to build a record snapshot.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	m.ready = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tabby_dns_ready", Help: "1 once every record source made its first attempt.",
	})
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tabby_dns_mesos_state_fetches_total", Help: "Fetches of the Mesos master state by result (ok, error).",
	}, []string{"result"})
	m.mesosFetchOK, m.mesosFetchErr = fetches.WithLabelValues("ok"), fetches.WithLabelValues("error")
	m.mesosStale = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tabby_dns_mesos_state_stale", Help: "1 while the last fetch of the Mesos master state failed and the last good state is served.",
	})
	m.mesosLastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tabby_dns_mesos_state_last_success_timestamp_seconds", Help: "When the Mesos master state was last read successfully.",
	})
	m.dsEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tabby_dns_datastore_events_total", Help: "Datastore watch events applied, by kind.",
	}, []string{"kind"})
	m.dsResyncs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tabby_dns_datastore_resyncs_total", Help: "Full re-lists of the datastore after a compacted or broken watch.",
	})
	m.dsSynced = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tabby_dns_datastore_synced", Help: "1 once WorkloadEndpoints, Nodes and IPPools were listed.",
	})
	m.forwardDenied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tabby_dns_forward_denied_total", Help: "Queries for names outside our zones REFUSED because the client is in no allowed network (ForwardAllow).",
	})
	m.forwardBusy = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tabby_dns_forward_busy_total", Help: "Queries answered SERVFAIL because MaxForwardsInFlight forwards were waiting for upstreams.",
	})
	m.datastoreDecErr = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tabby_dns_datastore_decode_errors_total", Help: "Datastore values that could not be decoded (ignored).",
	})
	reg.MustRegister(responses, m.malformed, m.names, m.serial, m.warnings, m.builds, m.buildSeconds, m.ready,
		fetches, m.mesosStale, m.mesosLastOK, m.dsEvents, m.dsResyncs, m.dsSynced, m.datastoreDecErr,
		m.forwardDenied, m.forwardBusy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) result(r int) { m.responses[r].Inc() }
