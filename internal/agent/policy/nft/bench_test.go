package nft

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// BenchmarkAddEndpoint measures what one new workload costs when 10,000
// exist: compiling the new state, and applying it (the transaction is an
// element add in each set the workload belongs to). Each iteration adds
// the endpoint and removes it again, so two Applies per iteration; the
// reported apply-ms is per Apply.
func BenchmarkAddEndpoint(b *testing.B) {
	requireRoot(b)
	for _, where := range []string{"remote", "local"} {
		b.Run(where, func(b *testing.B) {
			ns := newNS(b, "tbybe-")
			d := ns.driver()
			s := scaleState(10000)
			base := mustCompile(b, s)
			mustApply(b, d, base)
			node := "node-x"
			if where == "local" {
				node = Node
			}
			s.Endpoints = append(s.Endpoints, WEP(node, "default", "new", "tbynew", []string{"10.99.0.1/32"}, map[string]string{"app": "web"}, "calico"))
			var compile, apply time.Duration
			var elems int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				with, err := policy.Compile(s)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := d.Apply(context.Background(), with); err != nil {
					b.Fatal(err)
				}
				apply += time.Since(t1)
				compile += t1.Sub(t0)
				elems += d.LastChange().ElementsAdded
				t2 := time.Now()
				if err := d.Apply(context.Background(), base); err != nil {
					b.Fatal(err)
				}
				apply += time.Since(t2)
			}
			b.ReportMetric(float64(compile.Microseconds())/1000/float64(b.N), "compile-ms")
			b.ReportMetric(float64(apply.Microseconds())/1000/float64(2*b.N), "apply-ms")
			b.ReportMetric(float64(elems)/float64(b.N), "elements/add")
		})
	}
}

// policyScale is 1,000 policies of 10 rules each, all selecting the local
// workloads (so all are programmed): 10,000 rules, plus 10,000 remote
// workloads feeding their selector sets.
func policyScale() *policy.State {
	s := scaleState(10000)
	for i := 0; i < 1000; i++ {
		var rules []api.Rule
		for j := 0; j < 10; j++ {
			rules = append(rules, api.Rule{
				Action:      "Allow",
				Protocol:    Proto("TCP"),
				Source:      api.EntityRule{Selector: fmt.Sprintf("app == '%s'", []string{"web", "db", "cache", "api"}[(i+j)%4])},
				Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + 10*i + j))}},
			})
		}
		s.Policies = append(s.Policies, NP("default", fmt.Sprintf("p-%04d", i), float64(i), "has(calico)", rules, nil))
	}
	return s
}

// BenchmarkApplyPolicies measures building the whole table for 1,000
// policies / 10,000 rules from scratch (one transaction), and compiling
// them.
func BenchmarkApplyPolicies(b *testing.B) {
	requireRoot(b)
	s := policyScale()
	ns := newNS(b, "tbybp-")
	d := ns.driver()
	var compile, apply time.Duration
	rules := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Delete(context.Background()); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		rs, err := policy.Compile(s)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := d.Apply(context.Background(), rs); err != nil {
			b.Fatal(err)
		}
		apply += time.Since(t1)
		compile += t1.Sub(t0)
		rules = 0
		for _, c := range rs.Chains {
			rules += len(c.Rules)
		}
	}
	b.ReportMetric(float64(compile.Microseconds())/1000/float64(b.N), "compile-ms")
	b.ReportMetric(float64(apply.Microseconds())/1000/float64(b.N), "apply-ms")
	b.ReportMetric(float64(rules), "rules")
}

// BenchmarkResync measures reading the 1,000-policy table back from the
// kernel and finding nothing to change (what Apply does after someone
// else committed anything).
func BenchmarkResync(b *testing.B) {
	requireRoot(b)
	ns := newNS(b, "tbybr-")
	d := ns.driver()
	rs := mustCompile(b, policyScale())
	mustApply(b, d, rs)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.valid = false
		if err := d.Apply(context.Background(), rs); err != nil {
			b.Fatal(err)
		}
		if d.LastChange().Committed {
			b.Fatal("resync changed something")
		}
	}
}

// scaleAddr is the address of the i-th workload of scaleState.
func scaleAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 80 + byte(i>>16), byte(i >> 8), byte(i)})
}
