package suite

import (
	"context"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/internal/api"
)

// Policy scale used by the throughput benchmark and the scale run:
// 1,000 policies × 10 rules, selecting endpoints by label, with the
// 10,000 "ghost" endpoints feeding their selector sets.
const (
	scalePolicies    = 1000
	rulesPerPolicy   = 10
	scaleEndpoints   = 10000
	scaleNamespace   = "default"
	ghostNode        = "ghost"
	benchAllowPolicy = "zz-allow-bench"
	benchAllowOrder  = 5000
)

var appLabels = []string{"web", "db", "cache", "api"}

func proto(p api.Protocol) *api.Protocol { return &p }

// scalePolicySet returns n policies of rulesPerPolicy ingress rules each,
// all selecting `selector`: rule j of policy i allows TCP from one of four
// app selectors to port 10000+10i+j (never the benchmark's ports), so every
// rule is programmed and none matches the benchmark's traffic. A last
// policy (order 5000) allows the benchmark's own traffic from role=client.
func scalePolicySet(n int, selector string, ports ...uint16) []api.Resource {
	var out []api.Resource
	for i := range n {
		var rules []api.Rule
		for j := range rulesPerPolicy {
			rules = append(rules, api.Rule{
				Action:      "Allow",
				Protocol:    proto(api.ProtocolTCP),
				Source:      api.EntityRule{Selector: fmt.Sprintf("app == '%s'", appLabels[(i+j)%len(appLabels)])},
				Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + 10*i + j))}},
			})
		}
		order := float64(i)
		out = append(out, &api.NetworkPolicy{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("scale-%04d", i), Namespace: scaleNamespace},
			Spec: api.NetworkPolicySpec{Order: &order, Selector: selector, Types: []string{"Ingress"}, Ingress: rules}})
	}
	var ps []api.Port
	for _, p := range ports {
		ps = append(ps, api.SinglePort(p))
	}
	order := float64(benchAllowOrder)
	out = append(out, &api.NetworkPolicy{ObjectMeta: api.ObjectMeta{Name: benchAllowPolicy, Namespace: scaleNamespace},
		Spec: api.NetworkPolicySpec{Order: &order, Selector: selector, Types: []string{"Ingress"}, Ingress: []api.Rule{{
			Action: "Allow", Protocol: proto(api.ProtocolTCP), Source: api.EntityRule{Selector: "role == 'client'"},
			Destination: api.EntityRule{Ports: ps}}}}})
	return out
}

// ghostEndpoints are n WorkloadEndpoints of node "ghost" (no agent runs
// there), labelled app=web/db/cache/api in turn, addresses from base.
func ghostEndpoints(n int, second byte) []api.Resource {
	var out []api.Resource
	for i := range n {
		w := fmt.Sprintf("ghost%05d", i)
		out = append(out, &api.WorkloadEndpoint{
			ObjectMeta: api.ObjectMeta{Name: api.WorkloadEndpointName(ghostNode, "cni", w, "eth0"), Namespace: scaleNamespace,
				Labels: map[string]string{"app": appLabels[i%len(appLabels)]}},
			Spec: api.WorkloadEndpointSpec{Orchestrator: "cni", Node: ghostNode, Workload: w, ContainerID: w, Endpoint: "eth0",
				InterfaceName: "tby" + fmt.Sprintf("%011x", i), IPNetworks: []string{fmt.Sprintf("10.%d.%d.%d/32", second, i/250, i%250+1)}},
		})
	}
	return out
}

// nftCounts summarises a host's programmed policy: the policies and
// profiles its agent reports in its table, the table's rules, and the
// elements of the IPv4 selector sets.
type nftCounts struct {
	Policies    int
	SetElements int
	Rules       int
}

func countTabbyTable(ctx context.Context, p *harness.Probe) (nftCounts, error) {
	var c nftCounts
	var err error
	if c.Policies, err = p.Policies(); err != nil {
		return c, err
	}
	if c.SetElements, err = p.SetElements(); err != nil {
		return c, err
	}
	c.Rules, err = p.Rules()
	return c, err
}

// waitProgrammed polls the host until its agent has at least policies
// policies in its table and its selector sets elems elements.
func waitProgrammed(ctx context.Context, p *harness.Probe, policies, elems int, d time.Duration) (nftCounts, error) {
	deadline := time.Now().Add(d)
	var c nftCounts
	var err error
	for {
		c, err = countTabbyTable(ctx, p)
		if err == nil && c.Policies >= policies && c.SetElements >= elems {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return c, fmt.Errorf("policy not programmed after %s: %d policies (want %d), %d set elements (want %d), last error %v",
				d, c.Policies, policies, c.SetElements, elems, err)
		}
		time.Sleep(time.Second)
	}
}
