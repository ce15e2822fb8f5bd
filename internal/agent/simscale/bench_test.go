package simscale

import (
	"fmt"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

// simState is node 0's policy state in the simulated layout.
func simState(agents, endpoints, policies, rules int) *policy.State {
	apps := max(1, endpoints/20)
	s := &policy.State{Node: nodeName(0), Profiles: []*api.Profile{{ObjectMeta: api.ObjectMeta{Name: "sim"}}}}
	for i := range endpoints {
		s.Endpoints = append(s.Endpoints, wep(i, i%agents, appOf(i, agents, apps), endpointAddr(i)))
	}
	for p := range policies {
		s.Policies = append(s.Policies, networkPolicy(p, apps, rules))
	}
	return s
}

// BenchmarkSimFull: one agent's full compile (the engine's Full) in the
// simulated layout at 20 and 200 nodes.
func BenchmarkSimFull(b *testing.B) {
	for _, c := range []struct {
		name              string
		agents, eps, pols int
	}{{"agents=20", 20, 2000, 500}, {"agents=200", 200, 20000, 5000}} {
		b.Run(c.name, func(b *testing.B) {
			s := simState(c.agents, c.eps, c.pols, 5)
			eng := policy.NewEngine(true)
			for b.Loop() {
				if _, err := eng.Full(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSimFullNoPolicy: the full compile an ADD costs its host before
// any policy exists (the scale run's container start), at 20 and 200
// nodes of 100 endpoints.
func BenchmarkSimFullNoPolicy(b *testing.B) {
	for _, agents := range []int{20, 200} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) {
			s := simState(agents, 100*agents, 0, 5)
			eng := policy.NewEngine(true)
			for b.Loop() {
				if _, err := eng.Full(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
