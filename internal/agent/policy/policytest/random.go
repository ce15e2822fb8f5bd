package policytest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

// Random builds random, valid states and mutates them one change at a
// time: the input of the random-walk tests.
type Random struct {
	r    *rand.Rand
	next int // unique names and addresses
}

// NewRandom returns a generator; the same seed gives the same sequence.
func NewRandom(seed uint64) *Random {
	return &Random{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

var (
	randApps       = []string{"web", "db", "cache"}
	randNamespaces = []string{"default", "dev"}
	randSelectors  = []string{"all()", "app == 'web'", "app == 'db'", "has(calico)", "app in {'db', 'cache'}", "env != 'prod'", "has(trusted)"}
)

func (g *Random) labels() map[string]string {
	l := map[string]string{"app": pick(g.r, randApps...)}
	if g.r.IntN(2) == 0 {
		l["env"] = pick(g.r, "prod", "dev")
	}
	return l
}

func (g *Random) addrs() []string {
	g.next++
	n := g.next
	v4 := netip.AddrFrom4([4]byte{10, 65, byte(n >> 8), byte(n)}).String() + "/32"
	v6 := fmt.Sprintf("fd00:65::%x/128", n)
	// Dual-stack endpoints (as a dual-stack cluster's every workload) are
	// as common as IPv4-only ones; a few are IPv6-only.
	switch g.r.IntN(8) {
	case 0, 1, 2:
		return []string{v4, v6}
	case 3:
		return []string{v6}
	}
	return []string{v4}
}

func (g *Random) endpoint(local bool) *api.WorkloadEndpoint {
	g.next++
	node := fmt.Sprintf("node-%d", 1+g.r.IntN(3))
	if local {
		node = Node
	}
	profiles := []string{"calico"}
	if g.r.IntN(5) == 0 {
		profiles = append(profiles, "open")
	}
	w := WEP(node, pick(g.r, randNamespaces...), fmt.Sprintf("ep-%d", g.next), fmt.Sprintf("tbyr%07d", g.next), g.addrs(), g.labels(), profiles...)
	if g.r.IntN(3) == 0 {
		w.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: uint16(8000 + g.r.IntN(100))}}
		if local && g.r.IntN(2) == 0 {
			w.Spec.Ports[0].HostPort = uint16(31000 + g.r.IntN(20))
		}
	}
	return w
}

func (g *Random) entity() api.EntityRule {
	var e api.EntityRule
	switch g.r.IntN(6) {
	case 0:
		e.Selector = pick(g.r, randSelectors...)
	case 1:
		e.NotSelector = pick(g.r, randSelectors...)
	case 2:
		e.Nets = []string{pick(g.r, "192.0.2.0/24", "10.65.0.0/24", "2001:db8::/32", "fd00:65::/64")}
		if g.r.IntN(2) == 0 {
			e.Nets = append(e.Nets, pick(g.r, "198.51.100.0/24", "fd00:65::10/124"))
		}
	case 3:
		e.NotNets = []string{pick(g.r, "10.0.0.0/8", "fd00::/8")}
	case 4:
		e.NamespaceSelector = pick(g.r, "all()", "projectcalico.org/name == 'dev'", "global()")
		if g.r.IntN(2) == 0 {
			e.Selector = pick(g.r, randSelectors...)
		}
	}
	return e
}

func (g *Random) rule() api.Rule {
	r := api.Rule{Action: pick(g.r, "Allow", "Allow", "Allow", "Deny", "Log", "Pass")}
	switch g.r.IntN(4) {
	case 0:
		r.Protocol = Proto(pick(g.r, "TCP", "UDP"))
		ports := []string{pick(g.r, "80", "443", "8000:8100", "http", "53")}
		if g.r.IntN(2) == 0 {
			ports = append(ports, pick(g.r, "81", "http", "9000:9100"))
		}
		if g.r.IntN(3) == 0 {
			r.Destination.NotPorts = Ports(ports...)
		} else {
			r.Destination.Ports = Ports(ports...)
		}
	case 1:
		// ICMP or ICMPv6, with types of its family (echo request and
		// reply, unreachable, neighbour solicitation), sometimes a code or
		// a negated type, sometimes with the rule's ipVersion spelt out.
		v := pick(g.r, 4, 6)
		r.Protocol = Proto(map[int]string{4: "ICMP", 6: "ICMPv6"}[v])
		types := map[int][]int{4: {8, 0, 3}, 6: {128, 129, 1, 135}}[v]
		switch g.r.IntN(4) {
		case 0:
			r.ICMP = &api.ICMPFields{Type: Ptr(pick(g.r, types...))}
		case 1:
			r.ICMP = &api.ICMPFields{Type: Ptr(pick(g.r, types...)), Code: Ptr(pick(g.r, 0, 1))}
		case 2:
			r.NotICMP = &api.ICMPFields{Type: Ptr(pick(g.r, types...))}
		}
		if g.r.IntN(2) == 0 {
			r.IPVersion = Ptr(v)
		}
	case 2:
		r.IPVersion = Ptr(pick(g.r, 4, 6))
	}
	if g.r.IntN(2) == 0 {
		r.Source = g.entity()
		g.fitNets(&r, &r.Source)
	}
	if g.r.IntN(4) == 0 {
		r.Destination.Selector, r.Destination.NotSelector = "", ""
		e := g.entity()
		r.Destination.Nets, r.Destination.NotNets = e.Nets, e.NotNets
		g.fitNets(&r, &r.Destination)
	}
	return r
}

// fitNets keeps a rule's nets of one IP version, the rule's: a rule with
// a fixed version (ipVersion, ICMP or ICMPv6) gets nets of that version
// (IPv6 ones for 6); one without takes the family of the other side's
// nets, else of e's first net.
func (g *Random) fitNets(r *api.Rule, e *api.EntityRule) {
	family := func(nets []string) int {
		for _, n := range nets {
			if p, err := netip.ParsePrefix(n); err == nil {
				return map[bool]int{true: 4, false: 6}[p.Addr().Is4()]
			}
		}
		return 0
	}
	other := &r.Destination
	if e == &r.Destination {
		other = &r.Source
	}
	var v int
	switch {
	case r.IPVersion != nil:
		v = *r.IPVersion
	case r.Protocol != nil && *r.Protocol == "ICMP":
		v = 4
	case r.Protocol != nil && *r.Protocol == "ICMPv6":
		v = 6
	default:
		v = cmp.Or(family(slices.Concat(other.Nets, other.NotNets)), family(slices.Concat(e.Nets, e.NotNets)))
	}
	if v == 0 {
		return
	}
	nets := map[int][]string{4: {"192.0.2.0/24", "10.65.0.0/24", "198.51.100.0/24"}, 6: {"2001:db8::/32", "fd00:65::/64", "fd00:65::10/124"}}[v]
	fit := func(in []string) []string {
		var out []string
		for _, n := range in {
			if family([]string{n}) == v {
				out = append(out, n)
			}
		}
		if len(in) > 0 && len(out) == 0 {
			out = []string{pick(g.r, nets...)}
		}
		return out
	}
	e.Nets, e.NotNets = fit(e.Nets), fit(e.NotNets)
}

func (g *Random) rules() []api.Rule {
	n := g.r.IntN(4)
	out := make([]api.Rule, n)
	for i := range out {
		out[i] = g.rule()
	}
	return out
}

func (g *Random) policy(global bool) (np *api.NetworkPolicy, gp *api.GlobalNetworkPolicy) {
	g.next++
	in, out := g.rules(), g.rules()
	var types []string
	if g.r.IntN(3) == 0 {
		types = []string{pick(g.r, "Ingress", "Egress")}
	}
	order := float64(g.r.IntN(5))
	sel := pick(g.r, randSelectors...)
	if global {
		gp = GNP(fmt.Sprintf("gp-%d", g.next), order, sel, in, out, types...)
		if g.r.IntN(4) == 0 {
			gp.Spec.Order = nil
		}
		return nil, gp
	}
	np = NP(pick(g.r, randNamespaces...), fmt.Sprintf("np-%d", g.next), order, sel, in, out, types...)
	return np, nil
}

// State returns a random initial state.
func (g *Random) State() *policy.State {
	s := &policy.State{
		Node:     Node,
		Profiles: []*api.Profile{CNIProfile("calico"), AllowAllProfile("open")},
		Pools:    []*api.IPPool{Pool("v4", "10.65.0.0/16", true), Pool("v6", "fd00:65::/48", false)},
		Tiers:    []*api.Tier{Tier("t1", Ptr(10.0), pick(g.r, "Deny", "Pass")), Tier("t2", nil, pick(g.r, "Deny", "Pass"))},
	}
	for i := 0; i < 2+g.r.IntN(3); i++ {
		s.Endpoints = append(s.Endpoints, g.endpoint(true))
	}
	for i := 0; i < 5+g.r.IntN(10); i++ {
		s.Endpoints = append(s.Endpoints, g.endpoint(false))
	}
	for i := 0; i < g.r.IntN(4); i++ {
		g.Mutate(s)
	}
	return s
}

// Mutate applies one random change to s and describes it.
func (g *Random) Mutate(s *policy.State) string {
	switch g.r.IntN(16) {
	case 0:
		s.Endpoints = append(s.Endpoints, g.endpoint(true))
		return "add a local endpoint"
	case 1:
		s.Endpoints = append(s.Endpoints, g.endpoint(false))
		return "add a remote endpoint"
	case 2:
		if len(s.Endpoints) > 0 {
			i := g.r.IntN(len(s.Endpoints))
			s.Endpoints = slices.Delete(s.Endpoints, i, i+1)
			return "remove an endpoint"
		}
	case 3:
		if len(s.Endpoints) > 0 {
			// Objects are replaced, never edited, as the datastore
			// delivers them (the engine's entity cache relies on it).
			i := g.r.IntN(len(s.Endpoints))
			e := cloneWEP(s.Endpoints[i])
			e.Labels = g.labels()
			s.Endpoints[i] = e
			return "relabel " + e.Name
		}
	case 4:
		if len(s.Endpoints) > 0 {
			i := g.r.IntN(len(s.Endpoints))
			e := cloneWEP(s.Endpoints[i])
			e.Spec.IPNetworks = g.addrs()
			s.Endpoints[i] = e
			return "readdress " + e.Name
		}
	case 5:
		np, _ := g.policy(false)
		s.Policies = append(s.Policies, np)
		return "add policy " + np.Name
	case 6:
		_, gp := g.policy(true)
		s.GlobalPolicies = append(s.GlobalPolicies, gp)
		return "add global policy " + gp.Name
	case 7:
		if len(s.Policies) > 0 {
			i := g.r.IntN(len(s.Policies))
			s.Policies = slices.Delete(s.Policies, i, i+1)
			return "remove a policy"
		}
	case 8:
		if len(s.GlobalPolicies) > 0 {
			p := s.GlobalPolicies[g.r.IntN(len(s.GlobalPolicies))]
			p.Spec.Ingress = g.rules()
			p.Spec.Order = Ptr(float64(g.r.IntN(5)))
			return "change global policy " + p.Name
		}
	case 9:
		if len(s.Policies) > 0 {
			p := s.Policies[g.r.IntN(len(s.Policies))]
			p.Spec.Egress = g.rules()
			p.Spec.Selector = pick(g.r, randSelectors...)
			return "change policy " + p.Name
		}
	case 10:
		g.next++
		s.GlobalNetworkSets = append(s.GlobalNetworkSets, GNS(fmt.Sprintf("gns-%d", g.next), map[string]string{"trusted": ""},
			pick(g.r, "172.16.0.0/12", "10.65.0.0/24", "2001:db8:1::/48", "fd00:65::/64"), fmt.Sprintf("198.18.%d.0/24", g.r.IntN(256)),
			fmt.Sprintf("2001:db8:18:%x::/64", g.r.IntN(256))))
		return "add a global network set"
	case 11:
		if len(s.GlobalNetworkSets) > 0 {
			i := g.r.IntN(len(s.GlobalNetworkSets))
			s.GlobalNetworkSets = slices.Delete(s.GlobalNetworkSets, i, i+1)
			return "remove a global network set"
		}
	case 12:
		pl := s.Pools[g.r.IntN(len(s.Pools))]
		pl.Spec.NATOutgoing = !pl.Spec.NATOutgoing
		s.Felix.DefaultEndpointToHostAction = pick(g.r, "", "Accept", "Return")
		return "toggle natOutgoing and the endpoint-to-host action"
	case 13:
		if len(s.HostEndpoints) == 0 {
			s.HostEndpoints = append(s.HostEndpoints, HEP(Node, "hep-eth0", "eth0", map[string]string{"trusted": ""}, "192.0.2.10", "2001:db8::10"))
			return "add a host endpoint"
		}
		s.HostEndpoints = nil
		return "remove the host endpoints"
	case 14:
		_, gp := g.policy(true)
		tier := pick(g.r, "t1", "t2", "kube-admin")
		s.GlobalPolicies = append(s.GlobalPolicies, InTier(tier, gp))
		return "add global policy " + gp.Name + " in tier " + tier
	case 15:
		if len(s.Tiers) > 0 {
			t := s.Tiers[g.r.IntN(len(s.Tiers))]
			t.Spec.DefaultAction = pick(g.r, "Deny", "Pass")
			return "set tier " + t.Name + " defaultAction " + t.Spec.DefaultAction
		}
	}
	return g.Mutate(s)
}
