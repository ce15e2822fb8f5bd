package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/netns"
)

// lookupFrom asks the container's own resolver (the master's `tabby
// dns`, a lab address) for name's A records from inside the container: the
// query leaves it for port 53 and its host redirects it to the agent's
// forwarder.
func lookupFrom(c *Container, name string) ([]netip.Addr, error) {
	if c.DNS == nil || len(c.DNS.Nameservers) == 0 {
		return nil, fmt.Errorf("container %s has no nameserver", c.Name)
	}
	return lookupAt(c, netip.MustParseAddr(c.DNS.Nameservers[0]), name, mdns.TypeA)
}

// lookupAt asks server (port 53) from inside the container.
func lookupAt(c *Container, server netip.Addr, name string, qtype uint16) ([]netip.Addr, error) {
	var out []netip.Addr
	err := netns.Do(netns.Path(c.NetNS), func() error {
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), qtype)
		r, _, err := (&mdns.Client{Timeout: 5 * time.Second}).Exchange(q, netip.AddrPortFrom(server, 53).String())
		if err != nil {
			return err
		}
		if r.Rcode != mdns.RcodeSuccess {
			return fmt.Errorf("%s: %s", name, mdns.RcodeToString[r.Rcode])
		}
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *mdns.A:
				ip, _ := netip.AddrFromSlice(rr.A.To4())
				out = append(out, ip)
			case *mdns.AAAA:
				ip, _ := netip.AddrFromSlice(rr.AAAA)
				out = append(out, ip)
			}
		}
		return nil
	})
	return out, err
}

// TestPrivilegedLabEgressByDomain: a lab whose agents run the DNS
// forwarder (lab up --dns-policy), `tabby dns` as the upstream answering
// containers' names with their lab addresses. A client whose egress
// policy allows TCP only to api.team.mesos and *.shop.mesos reaches api
// and cart (by the wildcard) on another host right after looking them up,
// and not other.team.mesos, which it resolved too; what it learned keeps
// working while its agent is down and after the agent restarted.
func TestPrivilegedLabEgressByDomain(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("fq"), Nodes: 2, DNS: testDNS, DNSPolicy: true})
	ctx := context.Background()
	run := func(spec RunSpec) *Container { t.Helper(); return mustRun(t, l, spec) }
	// Containers outside the default namespace are named
	// <name>.<namespace>.mesos (CNI args as containerd's CRI sends them).
	apiC := run(RunSpec{Name: "api", Node: "h1", Namespace: "team"})
	other := run(RunSpec{Name: "other", Node: "h1", Namespace: "team"})
	cart := run(RunSpec{Name: "cart", Node: "h1", Namespace: "shop"})
	cli := run(RunSpec{Name: "cli", Node: "h2", Labels: []KeyValue{{"app", "cli"}}})
	const port = 8080
	for _, c := range []*Container{apiC, other, cart} {
		ln, err := ListenProbe(c.NetNS, ProbeTCP, netip.AddrPortFrom(c.IP(), port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	probe := func(c *Container) func() ProbeOutcome {
		return func() ProbeOutcome { return probeTCPFrom(cli, netip.Addr{}, netip.AddrPortFrom(c.IP(), port)) }
	}
	// Routes between the hosts are up: before the policy the network's
	// profile lets cli reach all three.
	for _, c := range []*Container{apiC, other, cart} {
		wantProbe(t, "cli → "+c.Name+" before the policy", true, probe(c))
	}
	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tcp, udp := api.Protocol("TCP"), api.Protocol("UDP")
	pol := &api.GlobalNetworkPolicy{
		ObjectMeta: api.ObjectMeta{Name: "cli-by-name"},
		Spec: api.GlobalNetworkPolicySpec{Selector: "app == 'cli'", Types: []string{"Egress"}, Egress: []api.Rule{
			{Action: api.ActionAllow, Protocol: &udp, Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(53)}}},
			{Action: api.ActionAllow, Protocol: &tcp, Destination: api.EntityRule{Domains: []string{"api.team.mesos", "*.shop.mesos"}}},
		}},
	}
	if _, err := datastore.NewClient(s).Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	// On failure: what h2's agent said, its table, and the answers.
	defer func() {
		if !t.Failed() {
			return
		}
		b, _ := os.ReadFile(l.agentFile("h2", "agent.log"))
		t.Logf("agent h2 log:\n%s", b)
		if cmd, err := l.NodeCommand(ctx, "h2", []string{"nft", "list", "table", "inet", "tabby"}); err == nil {
			out, err := cmd.CombinedOutput()
			t.Logf("h2 table: %v\n%s", err, out)
		}
		out, err := cmdOut(t, l, "cli", "dig", "+tries=1", "@"+cli.DNS.Nameservers[0], "api.team.mesos")
		t.Logf("dig api.team.mesos from cli: %v\n%s", err, out)
	}()
	// The policy is programmed once nothing is reachable any more.
	wantProbe(t, "cli → other before any lookup", false, probe(other))
	for _, x := range []struct {
		name string
		c    *Container
		ok   bool
	}{{"api.team.mesos", apiC, true}, {"cart.shop.mesos", cart, true}, {"other.team.mesos", other, false}} {
		var got []netip.Addr
		eventually(t, "look up "+x.name, func() error {
			var err error
			if got, err = lookupFrom(cli, x.name); err == nil && (len(got) != 1 || got[0] != x.c.IP()) {
				err = fmt.Errorf("got %v, want [%v]", got, x.c.IP())
			}
			return err
		})
		o := probe(x.c)()
		if o.Err != nil || o.Allowed != x.ok {
			t.Errorf("cli → %s (%v) right after its lookup: allowed=%v (%s, %v), want %v", x.name, x.c.IP(), o.Allowed, o.Detail, o.Err, x.ok)
		}
	}

	// Agent restart (Cilium #30984, #14333): while h2's agent is down and
	// after it is back, new connections to what was learned still go
	// through, without a new lookup; then lookups work again.
	if err := l.StopAgent("h2", true); err != nil {
		t.Fatal(err)
	}
	if o := probe(apiC)(); !o.Allowed {
		t.Errorf("cli → api while its agent is down: %s (%v), want allowed", o.Detail, o.Err)
	}
	if err := l.StartAgent(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if o := probe(apiC)(); !o.Allowed {
		t.Errorf("cli → api right after its agent restarted, no new lookup: %s (%v), want allowed", o.Detail, o.Err)
	}
	eventually(t, "look up cart.shop.mesos after the restart", func() error {
		_, err := lookupFrom(cli, "cart.shop.mesos")
		return err
	})
	wantProbe(t, "cli → cart after the restart", true, probe(cart))
	wantProbe(t, "cli → other after the restart", false, probe(other))
}

// TestPrivilegedLabEgressByDomainIPv6: on a dual-stack lab the workload's
// DNS over IPv6 is redirected to the forwarder's IPv6 address too, and an
// AAAA answer opens the name's IPv6 address (and only that name's).
func TestPrivilegedLabEgressByDomainIPv6(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("f6"), Nodes: 2, IPFamily: Dual, DNS: testDNS, DNSPolicy: true})
	ctx := context.Background()
	run := func(spec RunSpec) *Container { t.Helper(); return mustRun(t, l, spec) }
	apiC := run(RunSpec{Name: "api", Node: "h1", Namespace: "team"})
	other := run(RunSpec{Name: "other", Node: "h1", Namespace: "team"})
	cli := run(RunSpec{Name: "cli", Node: "h2", Labels: []KeyValue{{"app", "cli"}}})
	const port = 8080
	for _, c := range []*Container{apiC, other} {
		ln, err := ListenProbe(c.NetNS, ProbeTCP, netip.AddrPortFrom(c.IP6(), port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	probe := func(c *Container) func() ProbeOutcome {
		return func() ProbeOutcome { return probeTCPFrom(cli, netip.Addr{}, netip.AddrPortFrom(c.IP6(), port)) }
	}
	for _, c := range []*Container{apiC, other} {
		wantProbe(t, "cli → "+c.Name+" over IPv6 before the policy", true, probe(c))
	}
	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tcp, udp := api.Protocol("TCP"), api.Protocol("UDP")
	pol := &api.GlobalNetworkPolicy{
		ObjectMeta: api.ObjectMeta{Name: "cli-by-name"},
		Spec: api.GlobalNetworkPolicySpec{Selector: "app == 'cli'", Types: []string{"Egress"}, Egress: []api.Rule{
			{Action: api.ActionAllow, Protocol: &udp, Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(53)}}},
			{Action: api.ActionAllow, Protocol: &tcp, Destination: api.EntityRule{Domains: []string{"api.team.mesos"}}},
		}},
	}
	if _, err := datastore.NewClient(s).Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	wantProbe(t, "cli → other over IPv6 under the policy", false, probe(other))
	master6 := l.State().Master.IP6.Addr()
	for _, x := range []struct {
		name string
		c    *Container
		ok   bool
	}{{"api.team.mesos", apiC, true}, {"other.team.mesos", other, false}} {
		var got []netip.Addr
		eventually(t, "look up "+x.name+" AAAA over IPv6", func() error {
			var err error
			if got, err = lookupAt(cli, master6, x.name, mdns.TypeAAAA); err == nil && (len(got) != 1 || got[0] != x.c.IP6()) {
				err = fmt.Errorf("got %v, want [%v]", got, x.c.IP6())
			}
			return err
		})
		if o := probe(x.c)(); o.Err != nil || o.Allowed != x.ok {
			t.Errorf("cli → %s (%v) right after its lookup: allowed=%v (%s, %v), want %v", x.name, x.c.IP6(), o.Allowed, o.Detail, o.Err, x.ok)
		}
	}
}
