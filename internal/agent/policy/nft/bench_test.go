package nft

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// BenchmarkAddEndpoint measures what one new workload costs when 10,000
// exist: compiling the new state, and applying it — the transaction is an
// element add in each set the workload joins (plus, for a local one, its
// two chains and map elements). Each iteration adds the endpoint and
// removes it again; add-ms and remove-ms are the two Applies.
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
			var compile, add, remove time.Duration
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
				t2 := time.Now()
				elems += d.LastChange().ElementsAdded
				if err := d.Apply(context.Background(), base); err != nil {
					b.Fatal(err)
				}
				compile += t1.Sub(t0)
				add += t2.Sub(t1)
				remove += time.Since(t2)
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(ms(compile), "compile-ms")
			b.ReportMetric(ms(add), "add-ms")
			b.ReportMetric(ms(remove), "remove-ms")
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

// throughputLab is two containers and, in the "ruleset" case, the
// 1,000-policy / 10,000-rule ruleset with db's ingress subject to all of
// it: a new connection to db walks every policy before the last one
// allows it.
func throughputLab(b *testing.B, withRules bool) (*lab, *container, *container) {
	l := newLab(b)
	web := l.addContainer("web", "10.65.0.2")
	db := l.addContainer("db", "10.65.0.3")
	if !withRules {
		return l, web, db
	}
	s := policyScale()
	s.Endpoints = append(s.Endpoints[3:], // drop the fake local endpoints of CNINetwork
		wepFor(web, map[string]string{"app": "web"}, "calico"),
		wepFor(db, map[string]string{"app": "db"}, "calico"))
	s.Policies = append(s.Policies, NP("default", "zz-allow-bench", 1e6, "app == 'db'", []api.Rule{
		{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Selector: "app == 'web'"}, Destination: api.EntityRule{Ports: Ports("1024:65535")}},
	}, nil))
	mustApply(b, l.d, mustCompile(b, s))
	return l, web, db
}

// BenchmarkThroughput: bulk TCP from one container to another through
// the host, with no table and with the big ruleset (the conntrack shortcut
// should make them equal).
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name  string
		rules bool
	}{{"none", false}, {"ruleset", true}} {
		b.Run(tc.name, func(b *testing.B) {
			_, web, db := throughputLab(b, tc.rules)
			var ln net.Listener
			in(b, db.ns, func() (err error) { ln, err = net.Listen("tcp", db.addr.String()+":0"); return err })
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(io.Discard, c); c.Close() }()
				}
			}()
			var c net.Conn
			in(b, web.ns, func() (err error) { c, err = net.DialTimeout("tcp", ln.Addr().String(), okDeadline); return err })
			defer c.Close()
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnRate: new connections per second (connect, one byte each
// way, close), with no table and with the big ruleset: here every SYN
// walks the policies.
func BenchmarkConnRate(b *testing.B) {
	for _, tc := range []struct {
		name  string
		rules bool
	}{{"none", false}, {"ruleset", true}} {
		b.Run(tc.name, func(b *testing.B) {
			_, web, db := throughputLab(b, tc.rules)
			var ln net.Listener
			in(b, db.ns, func() (err error) { ln, err = net.Listen("tcp", db.addr.String()+":0"); return err })
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						var one [1]byte
						if _, err := c.Read(one[:]); err == nil {
							c.Write(one[:])
						}
						c.Close()
					}()
				}
			}()
			addr := ln.Addr().String()
			b.ResetTimer()
			in(b, web.ns, func() error {
				var one [1]byte
				for i := 0; i < b.N; i++ {
					c, err := net.DialTimeout("tcp", addr, okDeadline)
					if err != nil {
						return err
					}
					c.SetDeadline(time.Now().Add(okDeadline))
					if _, err := c.Write(one[:]); err != nil {
						return err
					}
					if _, err := c.Read(one[:]); err != nil {
						return err
					}
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
				return nil
			})
		})
	}
}

// BenchmarkThroughputRatio is the noise-resistant version of
// BenchmarkThroughput (performance-baselines.md measures the same way):
// one connection, rounds alternating between the big ruleset and no table,
// and the median over rounds of (throughput with rules ÷ without).
func BenchmarkThroughputRatio(b *testing.B) {
	l, web, db := throughputLab(b, true)
	rs := l.d.applied
	var ln net.Listener
	in(b, db.ns, func() (err error) { ln, err = net.Listen("tcp", db.addr.String()+":0"); return err })
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	var c net.Conn
	in(b, web.ns, func() (err error) { c, err = net.DialTimeout("tcp", ln.Addr().String(), okDeadline); return err })
	defer c.Close()
	buf := make([]byte, 1<<20)
	send := func(mb int) float64 {
		t0 := time.Now()
		for i := 0; i < mb; i++ {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		return float64(mb) / time.Since(t0).Seconds()
	}
	const rounds, mb = 7, 256
	var ratios, with, without []float64
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			mustApply(b, l.d, rs)
			w := send(mb)
			if err := l.d.Delete(context.Background()); err != nil {
				b.Fatal(err)
			}
			wo := send(mb)
			with, without, ratios = append(with, w), append(without, wo), append(ratios, w/wo)
		}
	}
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(with), "MB/s-rules")
	b.ReportMetric(median(without), "MB/s-none")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
