package dnspolicy

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	queries      *prometheus.CounterVec
	cached       prometheus.Counter // queries{result="cached"}: the hot path
	learned      prometheus.Counter
	dropped      prometheus.Counter
	sets         prometheus.Gauge
	elements     prometheus.Gauge
	writeSeconds prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_dns_policy_queries_total",
			Help: "Queries the DNS policy forwarder answered, by result (ok, cached, upstream_error, learn_error).",
		}, []string{"result"}),
		learned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_dns_policy_learned_total",
			Help: "Addresses written into learned sets (adds and timeout refreshes).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_dns_policy_dropped_total",
			Help: "Addresses not learned because their set was full (max elements per set).",
		}),
		sets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tabby_dns_policy_sets",
			Help: "Learned sets of the programmed ruleset.",
		}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tabby_dns_policy_elements",
			Help: "Learned elements the forwarder knows of, when the ruleset last changed.",
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tabby_dns_policy_write_seconds",
			Help:    "Time to write learned addresses to the kernel (until the netlink ack), per answer.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14),
		}),
	}
	m.cached = m.queries.WithLabelValues("cached")
	return m
}

// Collectors returns the forwarder's metrics, to register with the agent.
func (f *Forwarder) Collectors() []prometheus.Collector {
	m := f.metrics
	return []prometheus.Collector{m.queries, m.learned, m.dropped, m.sets, m.elements, m.writeSeconds}
}

// Dropped is how many addresses full sets refused (for tests and status).
func (f *Forwarder) Dropped() int { return int(counterValue(f.metrics.dropped)) }

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
