package suite

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/bench/internal/stats"
	"github.com/tabbynet/tabby/internal/netns"
)

// DNSPolicy measures egress by DNS name (docs/design/policy.md "Egress by
// DNS name"): what the interception costs a lookup, and whether a learned
// address costs a new connection more than one allowed by CIDR.
var DNSPolicy = harness.Benchmark{
	ID:    "dns-policy",
	Title: "Egress by DNS name: lookup through the forwarder, connections to a learned address",
	What: `One host, an agent with ` + "`--dns-policy-listen`" + `; a client container whose egress policy allows TCP to
` + "`api.bench.test`" + ` (by name), to a second server's address (by CIDR) and UDP to a stub resolver's port 5300. A stub
resolver (this binary, miekg/dns) runs in a namespace behind a veth of the host (another machine on its network) on ports 53 and 5300. **Lookup p50**: 300
sequential A queries from the client: to the stub's port 53, which the table redirects to the agent's forwarder
(it asks the stub, learns, then answers: a repeated name is answered from its cache), against the same query to
port 5300, which nothing intercepts. **Fresh lookup p50**: a new name every query, each with a new address, so each
is a cache miss, an upstream exchange and a kernel write. **Connections/s**: connect, 1 byte each way, close
(crr, 4 loops) to the server reached by name and to the one allowed by CIDR.`,
	Baseline: `The same client and stub without interception (port 5300), and the same connection loop to an address a
CIDR rule allows. Goals: lookup ≤ 1.2× the direct query, connections ≥ 0.95× the CIDR address.`,
	Method:  `Each round runs every path (order alternating); per-round ratios, medians over rounds.`,
	Systems: []report.System{{Key: report.Tabby, Label: "by name (intercepted / learned address)"}, {Key: "direct", Label: "by address (direct / CIDR)", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "lookup", Label: "lookup p50", Unit: "µs", LowerIsBetter: true},
		{Key: "fresh", Label: "lookup p50, a new name each time", Unit: "µs", LowerIsBetter: true},
		{Key: "cps", Label: "new connections", Unit: "1/s"},
	},
	Needs:  []string{"ip"},
	Budget: 3 * time.Minute, QuickBudget: 35 * time.Second,
	Run: runDNSPolicy,
}

const (
	dnsStubIP      = "10.201.0.2"
	dnsPolicyName  = "api.bench.test."
	dnsPolicyFresh = "fresh.bench.test."
)

func runDNSPolicy(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	ds, err := harness.StartDatastore(ctx, env)
	if err != nil {
		return err
	}
	if err := ds.Apply(ctx, harness.Pool("bench", "10.90.0.0/16", 26, "")); err != nil {
		return err
	}
	cniDir, err := harness.CNIDir(env)
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{cniDir}, filepath.Join(env.Tmp, "cni-cache"), nil)
	// The stub resolver is another machine on the host's network: a
	// namespace behind a veth (never a real resolver).
	h, err := harness.StartHost(ctx, env, ds, "dnspol", "10.200.0.1/24", "--disable-routing",
		"--dns-policy-listen", "10.200.0.1:1053", "--dns-policy-upstream", dnsStubIP+":53")
	if err != nil {
		return err
	}
	stubNS := env.Name("s")
	if _, err := env.J.Namespace(stubNS); err != nil {
		return err
	}
	peer := env.Name("v")
	for _, a := range [][]string{
		{"link", "add", "stub0", "type", "veth", "peer", "name", peer, "netns", stubNS},
		{"addr", "add", "10.201.0.1/24", "dev", "stub0"},
		{"link", "set", "stub0", "up"},
	} {
		if err := harness.IP(h.NS, a...); err != nil {
			return err
		}
	}
	for _, a := range [][]string{
		{"addr", "add", dnsStubIP + "/24", "dev", peer},
		{"link", "set", peer, "up"},
		{"link", "set", "lo", "up"},
		{"route", "add", "10.90.0.0/16", "via", "10.201.0.1"},
	} {
		if err := harness.IP(stubNS, a...); err != nil {
			return err
		}
	}
	if err := harness.Sysctl(h.NS, "net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	attach := func(role string) (*harness.Container, error) {
		list, err := h.ConfList("net1", map[string]string{"bench": "dnspol", "role": role})
		if err != nil {
			return nil, err
		}
		return harness.Attach(ctx, env, cni, list, h.NSPath, "dnspol-"+role)
	}
	var client, byName, byCIDR *harness.Container
	for _, x := range []struct {
		c    **harness.Container
		role string
	}{{&client, "client"}, {&byCIDR, "cidr"}, {&byName, "name"}} {
		if *x.c, err = attach(x.role); err != nil {
			return err
		}
	}
	stub := &harness.Container{IP: dnsStubIP}
	if _, err := env.J.StartProc("dns stub", stubNS, []string{env.Self, "helper", "dns-stub", "-listen", dnsStubIP, "-answer", byName.IP},
		filepath.Join(env.Tmp, "dns-stub.log")); err != nil {
		return err
	}
	if err := ds.Apply(ctx, fmt.Sprintf(`apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: dnspol}
spec:
  selector: bench == 'dnspol' && role == 'client'
  types: [Egress]
  egress:
  - {action: Allow, protocol: TCP, destination: {domains: [api.bench.test, "*.fresh.bench.test"]}}
  - {action: Allow, protocol: TCP, destination: {nets: [%s/32]}}
  - {action: Allow, protocol: UDP, destination: {nets: [%s/32], ports: [53, 5300]}}
`, byCIDR.IP, stub.IP)); err != nil {
		return err
	}
	for _, c := range []*harness.Container{byName, byCIDR} {
		if _, err := crrServer(env, c.NS, fmt.Sprintf("%s:%d", c.IP, crrPort)); err != nil {
			return err
		}
	}
	// Programmed: the name resolves through the forwarder and its address
	// then answers.
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := lookups(client.NSPath, stub.IP+":53", func(int) string { return dnsPolicyName }, 1)
		if err == nil {
			var c crrResult
			if c, err = crr(ctx, env, client.NS, fmt.Sprintf("%s:%d", byName.IP, crrPort), 200*time.Millisecond, 1); err == nil && c.Errors == 0 && c.PerSec > 0 {
				break
			} else if err == nil {
				err = fmt.Errorf("%d connections failed", c.Errors)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the policy by name never took effect: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	n := harness.Pick(env, 300, 100)
	crrDur := harness.Pick(env, 2*time.Second, time.Second)
	for r := 1; r <= env.Rounds; r++ {
		// Lookups, then (after a pause: a burst of fresh names leaves
		// work behind that would land on whichever connection run comes
		// next) the two connection runs, each group's order alternating.
		lookupsFirst := []string{"direct", "cached", "fresh"}
		conns := []string{"cps-name", "cps-cidr"}
		if r%2 == 0 {
			slices.Reverse(lookupsFirst)
			slices.Reverse(conns)
		}
		paths := append(append(lookupsFirst, "pause"), conns...)
		for _, p := range paths {
			if p == "pause" {
				time.Sleep(500 * time.Millisecond)
				continue
			}
			switch p {
			case "direct", "cached", "fresh":
				server, name := stub.IP+":53", func(int) string { return dnsPolicyName }
				if p == "direct" {
					server = stub.IP + ":5300"
				}
				if p == "fresh" {
					name = func(i int) string { return fmt.Sprintf("r%d-%d.%s", r, i, dnsPolicyFresh) }
				}
				lat, err := lookups(client.NSPath, server, name, n)
				if err != nil {
					return fmt.Errorf("%s lookups: %w", p, err)
				}
				v := stats.Percentile(lat, 50)
				switch p {
				case "direct":
					rec.Add("lookup", "direct", r, v)
					rec.Add("fresh", "direct", r, v)
				case "cached":
					rec.Add("lookup", report.Tabby, r, v)
				case "fresh":
					rec.Add("fresh", report.Tabby, r, v)
				}
			case "cps-name", "cps-cidr":
				ip, sys := byName.IP, report.Tabby
				if p == "cps-cidr" {
					ip, sys = byCIDR.IP, "direct"
				}
				c, err := crr(ctx, env, client.NS, fmt.Sprintf("%s:%d", ip, crrPort), crrDur, 4)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				rec.Add("cps", sys, r, c.PerSec)
			}
		}
		env.Log.Info("round", "round", r)
	}
	return nil
}

// lookups asks n A queries one after the other from a namespace and
// returns their latencies in microseconds.
func lookups(nsPath, server string, name func(int) string, n int) ([]float64, error) {
	lat := make([]float64, 0, n)
	err := netns.Do(nsPath, func() error {
		c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
		for i := range n {
			q := new(mdns.Msg)
			q.SetQuestion(name(i), mdns.TypeA)
			t0 := time.Now()
			r, _, err := c.Exchange(q, server)
			if err != nil {
				return fmt.Errorf("%s at %s: %w", name(i), server, err)
			}
			lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e3)
			if r.Rcode != mdns.RcodeSuccess || len(r.Answer) == 0 {
				return fmt.Errorf("%s at %s: %s, %d answers", name(i), server, mdns.RcodeToString[r.Rcode], len(r.Answer))
			}
		}
		return nil
	})
	return lat, err
}

// dnsStub is the stub resolver helper: dnsPolicyName answers -answer;
// r<R>-<I>.fresh.bench.test answers 10.98.R.I (a new address per name);
// everything else NXDOMAIN. TTL 300 s.
func dnsStub(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("dns-stub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1", "address to serve on (ports 53 and 5300)")
	answer := fs.String("answer", "192.0.2.1", "the address of "+dnsPolicyName)
	if fs.Parse(args) != nil {
		return 2
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		var a string
		var r, i int
		switch {
		case name == dnsPolicyName:
			a = *answer
		case strings.HasSuffix(name, "."+dnsPolicyFresh):
			if _, err := fmt.Sscanf(name, "r%d-%d.", &r, &i); err == nil {
				a = fmt.Sprintf("10.98.%d.%d", r%256, i%250+1)
			}
		}
		if a == "" {
			m.Rcode = mdns.RcodeNameError
		} else if q.Question[0].Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300}, A: net.ParseIP(a)})
		}
		w.WriteMsg(m)
	})
	errc := make(chan error, 4)
	for _, port := range []string{"53", "5300"} {
		addr := net.JoinHostPort(*listen, port)
		for _, network := range []string{"udp", "tcp"} {
			s := &mdns.Server{Addr: addr, Net: network, Handler: h}
			go func() { errc <- s.ListenAndServe() }()
		}
	}
	fmt.Fprintln(stderr, <-errc)
	return 1
}
