package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/internal/api"
)

// Policy scale used by the throughput benchmark and the scale run:
// 1,000 policies × 10 rules, selecting endpoints by label, with the
// 10,000 "ghost" endpoints feeding their selector sets.
const (
	scalePolicies     = 1000
	rulesPerPolicy    = 10
	scaleEndpoints    = 10000
	scaleNamespace    = "default"
	ghostNode         = "ghost"
	benchAllowPolicy  = "zz-allow-bench"
	benchAllowOrder   = 5000
	policyChainPrefix = "pi-"
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

// nftCounts summarises the `inet tabby` table of a namespace: policy
// chains and the elements of the selector sets.
type nftCounts struct {
	PolicyChains int
	SetElements  int
	Rules        int
}

func countTabbyTable(ctx context.Context, ns string) (nftCounts, error) {
	out, err := harness.Run(ctx, harness.InNS(ns, "nft", "-j", "list", "table", "inet", "tabby")...)
	if err != nil {
		return nftCounts{}, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nftCounts{}, fmt.Errorf("nft -j output: %w", err)
	}
	var c nftCounts
	for _, o := range doc.Nftables {
		if raw, ok := o["chain"]; ok {
			var ch struct{ Name string }
			_ = json.Unmarshal(raw, &ch)
			if strings.HasPrefix(ch.Name, policyChainPrefix) {
				c.PolicyChains++
			}
		}
		if raw, ok := o["set"]; ok {
			var s struct {
				Name string
				Elem []json.RawMessage
			}
			_ = json.Unmarshal(raw, &s)
			if strings.HasPrefix(s.Name, "s4-") {
				c.SetElements += len(s.Elem)
			}
		}
		if _, ok := o["rule"]; ok {
			c.Rules++
		}
	}
	return c, nil
}

// waitProgrammed polls the host's table until it has at least chains
// policy chains and elems selector-set elements.
func waitProgrammed(ctx context.Context, ns string, chains, elems int, d time.Duration) (nftCounts, error) {
	deadline := time.Now().Add(d)
	var c nftCounts
	var err error
	for {
		c, err = countTabbyTable(ctx, ns)
		if err == nil && c.PolicyChains >= chains && c.SetElements >= elems {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return c, fmt.Errorf("policy not programmed after %s: %d policy chains (want %d), %d set elements (want %d), last error %v",
				d, c.PolicyChains, chains, c.SetElements, elems, err)
		}
		time.Sleep(time.Second)
	}
}
