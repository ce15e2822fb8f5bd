package flowlog

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/flows"
)

// attrState: web and db local, web2 elsewhere; db admits web on 80,
// denies 81 (rule 1); a security tier passes everything but denies
// 10.66.0.0/16 (GNP rule 0) to db.
func attrState() *policy.State {
	s := CNINetwork()
	tcp := Proto("TCP")
	s.Policies = []*api.NetworkPolicy{NP("default", "db", 10, "app == 'db'", []api.Rule{
		{Action: "Allow", Protocol: tcp, Source: api.EntityRule{Selector: "app == 'web'"}, Destination: api.EntityRule{Ports: Ports("80")}},
		{Action: "Deny", Protocol: tcp, Destination: api.EntityRule{Ports: Ports("81")}},
	}, nil)}
	s.Tiers = []*api.Tier{Tier("security", Ptr(100.0), "Pass")}
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{InTier("security", GNP("outside", 1, "app == 'db'", []api.Rule{
		{Action: "Deny", Source: api.EntityRule{Nets: []string{"10.66.0.0/16"}}},
	}, nil))}
	return s
}

func tcpFlow(src, dst string, dport uint16) *flow {
	return &flow{family: 4, proto: 6, src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), sport: 40000, dport: dport}
}

// TestAttribute: a flow is replayed through the reference ruleset and
// each local end gets the record of its own direction, naming the policy
// and rule that decided (the profile, an explicit rule, the end of a
// tier, another tier), and the staged verdict where one applies.
func TestAttribute(t *testing.T) {
	ref := func(tier, kind, ns, name string, rule int) flows.PolicyRef {
		return flows.PolicyRef{Tier: tier, Kind: kind, Namespace: ns, Name: name, Rule: rule}
	}
	profile := ref("", "Profile", "", "calico", 0)
	db := func(rule int) flows.PolicyRef { return ref("default", "NetworkPolicy", "default", "db", rule) }
	type exp struct {
		dir, action string
		policy      flows.PolicyRef
	}
	for _, tc := range []struct {
		name string
		f    *flow
		want []exp
	}{
		{"web to db 80: web's egress by its profile, db's ingress by db rule 0", tcpFlow("10.65.0.2", "10.65.0.3", 80),
			[]exp{{flows.Egress, flows.Allow, profile}, {flows.Ingress, flows.Allow, db(0)}}},
		{"web2 to db 81: db rule 1 denies", tcpFlow("10.65.1.2", "10.65.0.3", 81),
			[]exp{{flows.Ingress, flows.Deny, db(1)}}},
		{"web2 to db 82: the end of the default tier", tcpFlow("10.65.1.2", "10.65.0.3", 82),
			[]exp{{flows.Ingress, flows.Deny, db(-1)}}},
		{"outside to db: the security tier denies first", tcpFlow("10.66.0.9", "10.65.0.3", 80),
			[]exp{{flows.Ingress, flows.Deny, ref("security", "GlobalNetworkPolicy", "", "security.outside", 0)}}},
		{"web to the outside: its profile", tcpFlow("10.65.0.2", "192.0.2.1", 443),
			[]exp{{flows.Egress, flows.Allow, profile}}},
		{"two remote ends: no record", tcpFlow("10.65.1.2", "192.0.2.1", 443), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAttributor(Node)
			a.SetState(attrState(), nil)
			tc.f.denied = tc.want != nil && tc.want[len(tc.want)-1].action == flows.Deny
			got := a.Attribute(tc.f, time.Now())
			if len(got) != len(tc.want) {
				t.Fatalf("got %d records %+v, want %d", len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				r := got[i]
				if r.Direction != w.dir || r.Action != w.action || r.Policy != w.policy {
					t.Errorf("record %d: got %s %s by %s, want %s %s by %s", i, r.Direction, r.Action, r.Policy, w.dir, w.action, w.policy)
				}
				if r.PendingAction != "" {
					t.Errorf("record %d: pending %s without staged policies", i, r.PendingAction)
				}
			}
		})
	}

	// A staged deny of web's egress to db: pending deny on web's record
	// (by the staged policy), db's is unchanged.
	a := NewAttributor(Node)
	staged := StagedFrom([]*api.StagedNetworkPolicy{{ObjectMeta: api.ObjectMeta{Name: "no-db", Namespace: "default"},
		Spec: api.StagedNetworkPolicySpec{NetworkPolicySpec: api.NetworkPolicySpec{Selector: "app == 'web'", Types: []string{"Egress"},
			Egress: []api.Rule{{Action: "Deny", Destination: api.EntityRule{Selector: "app == 'db'"}}}}}}}, nil, nil)
	a.SetState(attrState(), staged)
	got := a.Attribute(tcpFlow("10.65.0.2", "10.65.0.3", 80), time.Now())
	if len(got) != 2 {
		t.Fatalf("staged: got %d records, want 2", len(got))
	}
	want := ref("default", "StagedNetworkPolicy", "default", "no-db", 0)
	if got[0].Action != flows.Allow || got[0].PendingAction != flows.Deny || got[0].PendingPolicy == nil || *got[0].PendingPolicy != want {
		t.Errorf("staged: web's record is %s, pending %s by %v; want allow, pending deny by %s", got[0].Action, got[0].PendingAction, got[0].PendingPolicy, want)
	}
	if got[1].PendingAction != "" {
		t.Errorf("staged: db's ingress record has pending %s %v; the staged policy does not select db", got[1].PendingAction, got[1].PendingPolicy)
	}
}

// TestDenyLoggerKeepsVerdicts: the ruleset with logged denies decides
// every packet as the original does (the log chain drops after logging),
// and only the log chain is new.
func TestDenyLoggerKeepsVerdicts(t *testing.T) {
	rs, err := policy.Compile(attrState())
	if err != nil {
		t.Fatal(err)
	}
	rs = policy.Flatten(rs)
	d := &policy.DenyLogger{Group: 5, Rate: 10}
	logged := d.Apply(rs)
	if len(logged.Chains) != len(rs.Chains)+1 || logged.Chain(policy.LogDenyChain) == nil {
		t.Fatalf("got %d chains, want %d + %s", len(logged.Chains), len(rs.Chains), policy.LogDenyChain)
	}
	jumps := 0
	for _, c := range logged.Chains {
		for _, r := range c.Rules {
			if r.Verdict.Kind == policy.Jump && r.Verdict.Chain == policy.LogDenyChain {
				jumps++
			}
		}
	}
	if jumps == 0 {
		t.Fatal("no drop jumps to the log chain")
	}
	// Verdicts: the oracle walks the rewritten table (its log rule, which
	// has no verdict, taken out: the oracle does not read limits) and
	// decides every random packet as it decides the original.
	walkable := *logged
	walkable.Chains = nil
	for _, c := range logged.Chains {
		if c.Name == policy.LogDenyChain {
			c = &policy.Chain{Name: c.Name, Rules: c.Rules[1:]}
		}
		walkable.Chains = append(walkable.Chains, c)
	}
	g := NewRandom(7)
	st := g.State()
	rsR := policy.Flatten(mustCompile(t, st))
	loggedR := (&policy.DenyLogger{Group: 5, Rate: 10}).Apply(rsR)
	for i, c := range loggedR.Chains {
		if c.Name == policy.LogDenyChain {
			loggedR.Chains[i] = &policy.Chain{Name: c.Name, Rules: c.Rules[1:]}
		}
	}
	compared, drops := 0, 0
	for _, p := range append(g.Packets(st, 300), g.Packets(attrState(), 100)...) {
		for _, pair := range [][2]*policy.Ruleset{{rsR, loggedR}, {rs, &walkable}} {
			a, errA := Walk(pair[0], p)
			b, errB := Walk(pair[1], p)
			if errA != nil || errB != nil {
				continue // a packet of the other state
			}
			if a.Accept != b.Accept {
				t.Fatalf("%s: accepted %v by the table, %v with logged denies", p, a.Accept, b.Accept)
			}
			compared++
			if !a.Accept {
				drops++
			}
		}
	}
	if compared < 200 || drops == 0 {
		t.Fatalf("compared %d packets, %d dropped: too few to tell", compared, drops)
	}
	again := d.Apply(rs)
	for i := range again.Chains {
		if again.Chains[i] != logged.Chains[i] && again.Chains[i].Name != policy.LogDenyChain {
			t.Errorf("chain %s rewritten again: the logger must reuse its rewrite of an unchanged chain", again.Chains[i].Name)
		}
	}
}

// TestAttributeStagedKinds: a staged Kubernetes policy is named by its
// staged kind and Kubernetes name; a staged Delete of the policy that
// decides shows what decides without it.
func TestAttributeStagedKinds(t *testing.T) {
	a := NewAttributor(Node)
	rs, err := api.Decode([]byte(`apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: web-only, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: db, namespace: default}
spec: {stagedAction: Delete}
`))
	if err != nil {
		t.Fatal(err)
	}
	a.SetState(attrState(), StagedFrom([]*api.StagedNetworkPolicy{rs[1].(*api.StagedNetworkPolicy)}, nil,
		[]*api.StagedKubernetesNetworkPolicy{rs[0].(*api.StagedKubernetesNetworkPolicy)}))
	// web2 → db 81: db's rule 1 denies; without db (staged Delete), the
	// staged Kubernetes policy admits web2 (app web), rule 0.
	got := a.Attribute(&flow{family: 4, proto: 6, src: netip.MustParseAddr("10.65.1.2"), dst: netip.MustParseAddr("10.65.0.3"), sport: 1, dport: 81, denied: true}, time.Now())
	if len(got) != 1 {
		t.Fatalf("got %d records, want 1", len(got))
	}
	want := flows.PolicyRef{Tier: "default", Kind: "StagedKubernetesNetworkPolicy", Namespace: "default", Name: "web-only", Rule: 0}
	if r := got[0]; r.Action != flows.Deny || r.PendingAction != flows.Allow || r.PendingPolicy == nil || *r.PendingPolicy != want {
		t.Errorf("got %s, pending %s by %v; want deny, pending allow by %s", r.Action, r.PendingAction, r.PendingPolicy, want)
	}
}

// TestAttributeHostEndpoint: traffic to a host endpoint's address is
// recorded as its ingress, decided by its policy, the failsafe ports or
// the end of the tier.
func TestAttributeHostEndpoint(t *testing.T) {
	a := NewAttributor(Node)
	a.SetState(HostEndpoints(), nil)
	for _, tc := range []struct {
		port   uint16
		denied bool
		want   flows.PolicyRef
	}{
		{443, false, flows.PolicyRef{Tier: "default", Kind: "GlobalNetworkPolicy", Name: "uplink", Rule: 0}},
		{22, false, flows.PolicyRef{Kind: flows.PolicyKindDefault, Name: "failsafe-in", Rule: -1}},
		{8080, true, flows.PolicyRef{Tier: "default", Kind: "GlobalNetworkPolicy", Name: "uplink", Rule: -1}},
	} {
		f := tcpFlow("198.51.100.1", "192.0.2.10", tc.port)
		f.denied = tc.denied
		got := a.Attribute(f, time.Now())
		if len(got) != 1 {
			t.Fatalf("port %d: got %d records %+v, want 1", tc.port, len(got), got)
		}
		r := got[0]
		if r.Direction != flows.Ingress || r.Policy != tc.want || r.Dst == nil || r.Dst.Kind != flows.KindHost || r.Dst.Name != "node-a-eth0" {
			t.Errorf("port %d: got %s by %s to %+v, want ingress by %s to host endpoint node-a-eth0", tc.port, r.Direction, r.Policy, r.Dst, tc.want)
		}
	}
}

func mustCompile(t *testing.T, s *policy.State) *policy.Ruleset {
	t.Helper()
	rs, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestAttributeIPv6: IPv6 flows are replayed like IPv4 ones; an ICMPv6
// record carries its type as the destination port.
func TestAttributeIPv6(t *testing.T) {
	a := NewAttributor(Node)
	a.SetState(DualStack(), nil)
	web := func(rule int) flows.PolicyRef {
		return flows.PolicyRef{Tier: "default", Kind: "NetworkPolicy", Namespace: "default", Name: "web", Rule: rule}
	}
	for _, tc := range []struct {
		name string
		f    *flow
		want flows.PolicyRef
		port uint16
	}{
		{"tcp from a member of the network", &flow{family: 6, proto: 6, src: netip.MustParseAddr("fd00:65:1::2"), dst: netip.MustParseAddr("fd00:65::2"), sport: 1, dport: 80}, web(0), 80},
		{"icmpv6 echo", &flow{family: 6, proto: 58, src: netip.MustParseAddr("2001:db8::1"), dst: netip.MustParseAddr("fd00:65::2"), icmpType: 128}, web(1), 128},
		{"tcp from outside: the end of the tier", &flow{family: 6, proto: 6, src: netip.MustParseAddr("2001:db8::1"), dst: netip.MustParseAddr("fd00:65::2"), sport: 1, dport: 80, denied: true}, web(-1), 80},
	} {
		got := a.Attribute(tc.f, time.Now())
		if len(got) != 1 || got[0].Policy != tc.want || got[0].DstPort != tc.port || got[0].Direction != flows.Ingress {
			t.Errorf("%s: got %+v, want one ingress record by %s with dstPort %d", tc.name, got, tc.want, tc.port)
		}
	}
}
