package policy_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// bigState: 10,000 workloads in one network, a few policies.
func bigState(n, policies int) *policy.State {
	s := CNINetwork()
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, 80 + byte(i>>16), byte(i >> 8), byte(i)})
		app := []string{"web", "db", "cache", "api"}[i%4]
		s.Endpoints = append(s.Endpoints, WEP(fmt.Sprintf("node-%d", i%50), "default", fmt.Sprintf("ep-%d", i),
			fmt.Sprintf("tby%d", i), []string{a.String() + "/32"}, map[string]string{"app": app}, "calico"))
	}
	for i := 0; i < policies; i++ {
		var rules []api.Rule
		for j := 0; j < 10; j++ {
			rules = append(rules, api.Rule{
				Action: "Allow", Protocol: Proto("TCP"),
				Source:      api.EntityRule{Selector: fmt.Sprintf("app == '%s'", []string{"web", "db", "cache", "api"}[(i+j)%4])},
				Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + 10*i + j))}},
			})
		}
		s.Policies = append(s.Policies, NP("default", fmt.Sprintf("p-%04d", i), float64(i), "has(calico)", rules, nil))
	}
	return s
}

// BenchmarkCompile compiles a cluster of 10,000 workloads, with 10 and
// with 1,000 policies (10 rules each) that all apply here.
func BenchmarkCompile(b *testing.B) {
	for _, np := range []int{10, 1000} {
		b.Run(fmt.Sprintf("endpoints=10000/policies=%d", np), func(b *testing.B) {
			s := bigState(10000, np)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := policy.Compile(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFlatten: the flat-cost transform of the same rulesets (what the
// agent adds to each compile).
func BenchmarkFlatten(b *testing.B) {
	for _, np := range []int{10, 1000} {
		b.Run(fmt.Sprintf("endpoints=10000/policies=%d", np), func(b *testing.B) {
			rs, err := policy.Compile(bigState(10000, np))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				policy.Flatten(rs)
			}
		})
	}
}
