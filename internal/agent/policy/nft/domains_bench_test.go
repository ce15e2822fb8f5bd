package nft

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/agent/dnspolicy"
	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// DomainBench is what one run of the egress-by-name comparison measured:
// medians over rounds, each round running every path (order alternating).
type DomainBench struct {
	// Lookup latency p50, microseconds: Direct to the stub on a port
	// nothing intercepts; Cached through the forwarder for a name whose
	// addresses are in the sets (no kernel write); Fresh through the
	// forwarder for a new name each time (a kernel write per answer).
	Direct, Cached, Fresh float64
	// New TCP connections per second (connect, 1 byte each way, close) to
	// an address learned for an allowed name, and to one allowed by CIDR.
	ConnDomain, ConnCIDR float64
	// Medians of the per-round ratios (the machine's load changes between
	// rounds, less within one): cached/direct, fresh/direct, domain/CIDR.
	LookupX, FreshX, ConnX float64
}

// domainBenchState: TCP to api.ok.test, *.fresh.test and 192.0.2.30/32;
// UDP to the stub's port 5300 (the direct path).
func domainBenchState(c *container) *policy.State {
	s := labState(wepFor(c, map[string]string{"app": "client"}, "calico"))
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{GNP("by-name", 1, "app == 'client'", nil, []api.Rule{
		{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Domains: []string{"api.ok.test", "*.fresh.test"}}},
		{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Nets: []string{"192.0.2.30/32"}}},
		{Action: "Allow", Protocol: Proto("UDP"), Destination: api.EntityRule{Nets: []string{stubIP + "/32"}, Ports: Ports("53", "5300")}},
	}, "Egress")}
	s.DNS = &policy.DNSPolicy{Redirect4: netip.MustParseAddrPort(hostIP + ":1053"), Resolvers: []netip.Addr{netip.MustParseAddr(stubIP)}}
	return s
}

// runDomainBench sets up the lab and measures rounds × (n lookups per
// path, d of connections per address).
func runDomainBench(b testing.TB, rounds, n int, d time.Duration) DomainBench {
	l := newLab(b)
	c := l.addContainer("client", "10.65.0.2")
	port := serveTCP(b, l.ext.path, "")
	in(b, l.ext.path, func() error {
		for _, a := range []string{"192.0.2.21", "192.0.2.30"} {
			if err := addAddr("ext0", a+"/32"); err != nil {
				return err
			}
		}
		return nil
	})
	stub := &stubDNS{ttl: 300, names: map[string][]string{}, cname: map[string]string{}}
	stub.set("api.ok.test", "192.0.2.21")
	stub.all = func(name string) []string {
		var r, i int
		if _, err := fmt.Sscanf(name, "f%d-%d.fresh.test.", &r, &i); err != nil {
			return nil
		}
		return []string{fmt.Sprintf("10.98.%d.%d", r, i%250+1)}
	}
	serveStub(b, l, stub, 5300)
	rs := mustCompile(b, domainBenchState(c))
	mustApply(b, l.d, rs)
	startForwarder(b, l, dnspolicy.Config{}, rs, false)
	resolve(b, c, "api.ok.test", "udp")
	if _, err := tcpAsk(c.ns, "192.0.2.21", port, okDeadline); err != nil {
		b.Fatalf("api.ok.test not reachable after its lookup: %v", err)
	}

	var direct, cached, fresh, connDom, connCIDR []float64
	for r := range rounds {
		paths := []string{"direct", "cached", "fresh", "conn-domain", "conn-cidr"}
		if r%2 == 1 {
			slices.Reverse(paths)
		}
		for _, p := range paths {
			switch p {
			case "direct":
				direct = append(direct, lookupP50(b, c, stubIP+":5300", func(int) string { return "api.ok.test." }, n))
			case "cached":
				cached = append(cached, lookupP50(b, c, stubIP+":53", func(int) string { return "api.ok.test." }, n))
			case "fresh":
				fresh = append(fresh, lookupP50(b, c, stubIP+":53", func(i int) string { return fmt.Sprintf("f%d-%d.fresh.test.", r, i) }, n))
			case "conn-domain":
				connDom = append(connDom, connRate(b, c, "192.0.2.21", port, d))
			case "conn-cidr":
				connCIDR = append(connCIDR, connRate(b, c, "192.0.2.30", port, d))
			}
		}
	}
	var lx, fx, cx []float64
	for i := range direct {
		lx = append(lx, cached[i]/direct[i])
		fx = append(fx, fresh[i]/direct[i])
		cx = append(cx, connDom[i]/connCIDR[i])
	}
	return DomainBench{Direct: median(direct), Cached: median(cached), Fresh: median(fresh), ConnDomain: median(connDom), ConnCIDR: median(connCIDR),
		LookupX: median(lx), FreshX: median(fx), ConnX: median(cx)}
}

// lookupP50 asks n A queries one after the other from the container and
// returns the median latency in microseconds.
func lookupP50(b testing.TB, c *container, server string, name func(int) string, n int) float64 {
	b.Helper()
	lat := make([]float64, 0, n)
	in(b, c.ns, func() error {
		cl := &mdns.Client{Net: "udp", Timeout: okDeadline}
		for i := range n {
			q := new(mdns.Msg)
			q.SetQuestion(name(i), mdns.TypeA)
			t0 := time.Now()
			r, _, err := cl.Exchange(q, server)
			if err != nil {
				return fmt.Errorf("query %s at %s: %w", name(i), server, err)
			}
			lat = append(lat, float64(time.Since(t0).Microseconds()))
			if len(r.Answer) == 0 {
				return fmt.Errorf("query %s at %s: no answer", name(i), server)
			}
		}
		return nil
	})
	return median(lat)
}

// connRate opens connections one after the other for d (connect, one
// line each way, close) and returns connections per second.
func connRate(b testing.TB, c *container, addr string, port uint16, d time.Duration) float64 {
	b.Helper()
	n := 0
	var elapsed time.Duration
	in(b, c.ns, func() error {
		dst := net.JoinHostPort(addr, fmt.Sprint(port))
		t0 := time.Now()
		for time.Since(t0) < d {
			conn, err := net.DialTimeout("tcp", dst, okDeadline)
			if err != nil {
				return fmt.Errorf("connect %s: %w", dst, err)
			}
			fmt.Fprintln(conn, "x")
			if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
				conn.Close()
				return err
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST: no TIME_WAIT pile-up
			}
			conn.Close()
			n++
		}
		elapsed = time.Since(t0)
		return nil
	})
	return float64(n) / elapsed.Seconds()
}

// BenchmarkDomainPolicy: lookup latency through the interception path
// against a direct query (goal ≤ 1.2×), and new connections/s to an
// allowed name's address against an address allowed by CIDR (goal ≥
// 0.95×), in the same run. `make bench` runs the same comparison as the
// "dns-policy" benchmark; this one is for quick checks:
//
//	go test ./internal/agent/policy/nft -run XXX -bench DomainPolicy -benchtime 1x
func BenchmarkDomainPolicy(b *testing.B) {
	requireRoot(b)
	for range b.N {
		r := runDomainBench(b, 7, 300, time.Second)
		b.ReportMetric(r.LookupX, "lookup-x")
		b.ReportMetric(r.FreshX, "fresh-lookup-x")
		b.ReportMetric(r.ConnX, "conn-x")
		b.Logf("lookup p50 µs: direct %.0f, intercepted (cached) %.0f, intercepted (fresh name, kernel write) %.0f; conn/s: domain %.0f, CIDR %.0f",
			r.Direct, r.Cached, r.Fresh, r.ConnDomain, r.ConnCIDR)
	}
}
