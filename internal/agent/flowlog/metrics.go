package flowlog

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tabbynet/tabby/internal/flows"
)

// metrics are the flow log's Prometheus metrics (docs/metrics.md).
type metrics struct {
	flows    *prometheus.CounterVec // flow observations by action and direction
	packets  *prometheus.CounterVec // per policy
	bytes    *prometheus.CounterVec
	deniedP  *prometheus.CounterVec // calico_denied_packets, as Calico's reporter names it
	deniedB  *prometheus.CounterVec
	records  prometheus.Counter
	ringLen  prometheus.GaugeFunc
	dropped  prometheus.CounterFunc
	overflow prometheus.CounterFunc
}

func newMetrics(c *Collector) *metrics {
	return &metrics{
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_flows_total", Help: "Flows of this node's endpoints seen (conntrack new flows, logged denied packets), by action (allow, deny) and direction (ingress, egress).",
		}, []string{"action", "direction"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_policy_packets_total", Help: "Packets of flows of this node's endpoints, by the deciding policy (kind, tier, namespace/name), action and direction.",
		}, []string{"kind", "tier", "policy", "action", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_policy_bytes_total", Help: "Bytes of flows of this node's endpoints, by the deciding policy (kind, tier, namespace/name), action and direction.",
		}, []string{"kind", "tier", "policy", "action", "direction"}),
		deniedP: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calico_denied_packets", Help: "Denied packets (as logged, under the kernel's rate limit), by the deciding policy (tier|namespace/name|rule) and source IP: Calico's Prometheus reporter's metric.",
		}, []string{"policy", "srcIP"}),
		deniedB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calico_denied_bytes", Help: "Bytes of denied packets (as logged), by the deciding policy (tier|namespace/name|rule) and source IP: Calico's Prometheus reporter's metric.",
		}, []string{"policy", "srcIP"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_flow_records_total", Help: "Aggregated flow records written to the ring (one per flow and window).",
		}),
		ringLen: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tabby_flow_ring_records", Help: "Flow records held in the ring (its capacity bounds the memory).",
		}, func() float64 { return float64(c.ring.Len()) }),
		dropped: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tabby_flow_follower_dropped_total", Help: "Flow records a slow follower of GET /flows?follow=1 missed.",
		}, func() float64 { return float64(c.ring.Dropped()) }),
		overflow: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tabby_flow_window_overflow_total", Help: "Flow observations dropped because a window held its maximum of distinct flows.",
		}, func() float64 { return float64(c.agg.Overflow()) }),
	}
}

// Collectors are the metrics, for the agent's registry.
func (c *Collector) Collectors() []prometheus.Collector {
	m := c.m
	return []prometheus.Collector{m.flows, m.packets, m.bytes, m.deniedP, m.deniedB, m.records, m.ringLen, m.dropped, m.overflow}
}

func policyLabel(p flows.PolicyRef) string {
	if p.Namespace != "" {
		return p.Namespace + "/" + p.Name
	}
	return p.Name
}

func (m *metrics) observed(r *flows.FlowRecord, isNew bool) {
	if isNew {
		m.flows.WithLabelValues(r.Action, r.Direction).Inc()
	}
	if r.Packets == 0 && r.Bytes == 0 {
		return
	}
	l := []string{r.Policy.Kind, r.Policy.Tier, policyLabel(r.Policy), r.Action, r.Direction}
	m.packets.WithLabelValues(l...).Add(float64(r.Packets))
	m.bytes.WithLabelValues(l...).Add(float64(r.Bytes))
	if r.Action == flows.Deny {
		p := r.Policy.Tier + "|" + policyLabel(r.Policy) + "|" + strconv.Itoa(r.Policy.Rule)
		m.deniedP.WithLabelValues(p, r.SrcIP).Add(float64(r.Packets))
		m.deniedB.WithLabelValues(p, r.SrcIP).Add(float64(r.Bytes))
	}
}

func (m *metrics) flushed(n int) { m.records.Add(float64(n)) }
