// Package suite holds Tabby's benchmarks, each a self-contained
// harness.Benchmark comparing Tabby with its baseline in the same run: CNI
// latency, IPAM allocation rate, data-plane throughput, DNS, and the
// lab-based ones (cross-host throughput, policy and route propagation, the
// scale run). All returns them in report order.
//
// It imports the harness and Tabby's public packages; it must not import
// the agent, the DNS server or ctl (Tabby runs as its own processes).
package suite

import "github.com/tabbynet/tabby/bench/internal/harness"

// All is every benchmark, in the order they run and are reported.
func All() []harness.Benchmark {
	return []harness.Benchmark{CNILatency, IPAMRate, PolicyThroughput, PolicyRealistic, FlowLogs, DNS, DNSPolicy, CrossHost, Propagation, Scale, Simulation}
}
