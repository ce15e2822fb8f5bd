package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
)

// Egress by DNS name (docs/design/policy.md "Egress by DNS name").
//
// A rule's destination.domains, and the allowedEgressDomains of the
// network sets an egress Allow rule's destination selector matches, become
// a match on a learned set: d4-<hash> / d6-<hash> of type SetLearned4/6,
// named after the sorted list of patterns, whose elements the compiler
// never knows. The agent's DNS forwarder (internal/agent/dnspolicy) adds
// each address of an answer to the learned sets whose patterns match a
// name of the answer, with a timeout, before it passes the answer on; the
// driver creates the sets and never touches their elements.

// DNSPolicy is what the compiler needs to know of the DNS forwarder.
type DNSPolicy struct {
	// Redirect4 and Redirect6 are where the forwarder listens (a local
	// address of the host and a port): DNS (UDP and TCP port 53) from
	// local workloads is DNATed there and accepted to the host. Invalid:
	// no interception in that family.
	Redirect4, Redirect6 netip.AddrPort
	// MaxElements bounds every learned set in the kernel (the forwarder
	// keeps below it; the kernel refuses more).
	MaxElements uint32
	// Resolvers are the addresses whose DNS is intercepted: the resolvers
	// the workloads are configured with (`tabby dns`, the cluster's). DNS
	// to any other address goes its way under the egress policy, and what
	// it answers is learned by nobody (so a resolver that is itself a
	// workload here can ask its own upstreams without being looped back).
	// None: every destination's port 53 is intercepted.
	Resolvers []netip.Addr
}

// DefaultMaxLearned is DNSPolicy.MaxElements when unset.
const DefaultMaxLearned = 65536

// Learned is one address the forwarder puts into a learned set.
type Learned struct {
	Set     string
	Addr    netip.Addr
	Timeout time.Duration
}

// IsLearnedSet reports whether a set name is a learned (domain) set: its
// elements come from DNS at run time, so the transforms must neither
// prune rules that read it while it is empty nor merge it into unions.
func IsLearnedSet(name string) bool {
	return strings.HasPrefix(name, "d4-") || strings.HasPrefix(name, "d6-")
}

// parseDomains parses destination.domains into sorted canonical patterns.
func parseDomains(field string, ds []string) ([]string, error) {
	var out []string
	for i, d := range ds {
		p, err := api.ParseDomainPattern(d)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %v", field, i, err)
		}
		out = append(out, p.String())
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// domainSet registers the learned set of a pattern list in one family.
func (c *compiler) domainSet(patterns []string, family int) string {
	key := strings.Join(patterns, ",")
	name := "d4-" + shortHash(key)
	t := SetLearned4
	if family == 6 {
		name, t = "d6-"+shortHash(key), SetLearned6
	}
	if s, ok := c.sets[name]; ok {
		return s.Name
	}
	max := uint32(DefaultMaxLearned)
	if c.state.DNS != nil && c.state.DNS.MaxElements > 0 {
		max = c.state.DNS.MaxElements
	}
	c.sets[name] = &Set{Name: name, Type: t, Comment: truncateComment("domains " + strings.Join(patterns, " ")), Domains: patterns, MaxElements: max}
	return name
}

// selectorDomains is the union of the allowedEgressDomains of the
// network sets a predicate matches (sorted, canonical). Patterns that do
// not parse are left out (validation refuses them; the warning names
// them).
func (c *compiler) selectorDomains(p *predicate) []string {
	if p == nil {
		return nil
	}
	byID := c.netSetDomains()
	if len(byID) == 0 {
		return nil
	}
	var out []string
	for _, e := range c.members(p) {
		out = append(out, byID[e.id]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// netSetDomains maps network set entity ids to their parsed domains.
func (c *compiler) netSetDomains() map[string][]string {
	out := map[string][]string{}
	add := func(id string, ds []string) {
		for _, d := range ds {
			p, err := api.ParseDomainPattern(d)
			if err != nil {
				c.warnf("%s: spec.allowedEgressDomains: %v; the pattern is ignored", id, err)
				continue
			}
			out[id] = append(out[id], p.String())
		}
	}
	for _, n := range c.state.GlobalNetworkSets {
		if n != nil && len(n.Spec.AllowedEgressDomains) > 0 {
			add("GlobalNetworkSet "+n.Name, n.Spec.AllowedEgressDomains)
		}
	}
	for _, n := range c.state.NetworkSets {
		if n != nil && len(n.Spec.AllowedEgressDomains) > 0 {
			add("NetworkSet "+namespaceOf(&n.ObjectMeta)+"/"+n.Name, n.Spec.AllowedEgressDomains)
		}
	}
	return out
}

// domainAlternatives adds, to the alternatives of an entity that names
// domains, the match on their learned set. An entity with explicit
// domains matches only them (validation refuses nets and selectors next
// to them); one whose selector matches network sets with domains also
// matches, as another alternative, the learned set of those domains.
func (c *compiler) domainAlternatives(e *compiledEntity, family int, alts [][]Match) [][]Match {
	if family == 0 {
		return alts
	}
	if len(e.domains) > 0 {
		m := AddrSet{Family: family, Dir: e.dir, Set: c.domainSet(e.domains, family)}
		for i := range alts {
			alts[i] = append(slices.Clone(alts[i]), m)
		}
		return alts
	}
	if len(e.setDomains) == 0 || e.pos == nil {
		return alts
	}
	sel := c.selectorSet(e.pos, family)
	dom := AddrSet{Family: family, Dir: e.dir, Set: c.domainSet(e.setDomains, family)}
	out := alts
	for _, a := range alts {
		var alt []Match
		for _, m := range a {
			if s, ok := m.(AddrSet); ok && s.Set == sel && !s.Neg {
				m = dom
			}
			alt = append(alt, m)
		}
		out = append(out, alt)
	}
	return out
}

// DNS interception: UDP and TCP port 53 from local workloads to the
// forwarder.
func (c *compiler) dnsRedirectChains() {
	d := c.state.DNS
	if d == nil {
		var doms []string
		for _, s := range c.sets {
			if IsLearnedSet(s.Name) {
				doms = append(doms, s.Domains...)
			}
		}
		if len(doms) > 0 {
			slices.Sort(doms)
			c.warnf("rules allow domains (%s) but this agent runs no DNS forwarder (tabby agent --dns-policy-listen): they match nothing",
				strings.Join(slices.Compact(doms), " "))
		}
		return
	}
	var rules, check []Rule
	for _, r := range []struct {
		fam int
		to  netip.AddrPort
	}{{4, d.Redirect4}, {6, d.Redirect6}} {
		if !r.to.IsValid() {
			continue // not redirected: forward applies the policy as usual
		}
		for _, dst := range c.interceptedResolvers(r.fam) {
			for _, p := range c.ifPrefixes {
				for _, proto := range []uint8{6, 17} {
					ms := []Match{NFProto{Family: r.fam}, IfName{Name: p, Prefix: true}, L4Proto{Proto: proto}, Port{Dir: Dst, Min: 53, Max: 53}}
					if dst.IsValid() {
						ms = append(ms, AddrPrefix{Dir: Dst, Prefix: dst})
					}
					rules = append(rules, Rule{Matches: ms, Stmts: []Stmt{DNAT{Addr: r.to.Addr(), Port: r.to.Port()}}})
					// The workload's egress policy decides on the query as
					// it was sent (to its resolver, port 53), before the
					// redirect rewrites it: a policy that denies a
					// workload DNS still does. New flows only; what it
					// allows returns here, what it denies is dropped.
					check = append(check, Rule{Matches: append(slices.Clone(ms), CtState{State: CtNew}), Verdict: Verdict{Kind: Jump, Chain: "from-wl"}})
				}
			}
		}
	}
	if len(rules) == 0 {
		return
	}
	c.addChain(&Chain{Name: "dns-redirect", Hook: hook(TypeNAT, HookPrerouting, PriorityDstNAT), Rules: rules})
	c.addChain(&Chain{Name: "dns-policy", Hook: hook(TypeFilter, HookPrerouting, PriorityDNSPolicy), Rules: check})
}

// interceptedResolvers are the destinations (of one family) whose DNS is
// redirected: DNSPolicy.Resolvers, or, when it names none at all, any
// destination (the invalid prefix). A family none of the resolvers is of
// is not intercepted.
func (c *compiler) interceptedResolvers(family int) []netip.Prefix {
	d := c.state.DNS
	if len(d.Resolvers) == 0 {
		return []netip.Prefix{{}}
	}
	var out []netip.Prefix
	for _, a := range d.Resolvers {
		a = a.Unmap()
		if addrFamily(a) == family {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	slices.SortFunc(out, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return slices.Compact(out)
}

// PriorityDNSPolicy is the prerouting priority of the chain that applies
// egress policy to DNS queries before dns-redirect (dstnat) rewrites them.
const PriorityDNSPolicy int32 = PriorityDstNAT - 10

// dnsAccept are the wl-to-host rules that let redirected queries reach
// the forwarder: dns-policy applied the workload's egress policy to them
// as they were sent, before the DNAT.
func (c *compiler) dnsAccept() []Rule {
	d := c.state.DNS
	if d == nil {
		return nil
	}
	var rules []Rule
	for _, r := range []struct {
		fam int
		to  netip.AddrPort
	}{{4, d.Redirect4}, {6, d.Redirect6}} {
		if !r.to.IsValid() {
			continue
		}
		for _, proto := range []uint8{6, 17} {
			rules = append(rules, Rule{Matches: []Match{
				NFProto{Family: r.fam}, L4Proto{Proto: proto}, Port{Dir: Dst, Min: r.to.Port(), Max: r.to.Port()},
				AddrPrefix{Dir: Dst, Prefix: netip.PrefixFrom(r.to.Addr(), r.to.Addr().BitLen())},
			}, Verdict: Verdict{Kind: Accept}})
		}
	}
	return rules
}

// DomainSets lists the learned sets of a ruleset with their patterns: what
// the forwarder fills.
func (r *Ruleset) DomainSets() []*Set {
	var out []*Set
	for _, s := range r.Sets {
		if s.Type == SetLearned4 || s.Type == SetLearned6 {
			out = append(out, s)
		}
	}
	return out
}

// DomainsChanged reports whether a change is of a network set that has
// (or had) allowedEgressDomains: which patterns feed the learned sets of
// rules whose selectors match it may change (with its domains or its
// labels), and only a full compile computes that, so Engine.Update must
// not take the change.
func DomainsChanged(ch Change) bool {
	has := func(r api.Resource) bool {
		switch o := r.(type) {
		case *api.NetworkSet:
			return o != nil && len(o.Spec.AllowedEgressDomains) > 0
		case *api.GlobalNetworkSet:
			return o != nil && len(o.Spec.AllowedEgressDomains) > 0
		}
		return false
	}
	return has(ch.Old) || has(ch.New)
}

// entityDomains fills the domains of a rule's entities: explicit
// destination.domains (an egress Allow rule's destination only, as
// validation says), and the allowedEgressDomains of the network sets an
// egress Allow rule's destination selector matches (Calico: "no effect in
// ingress rules, or in a rule whose action is not Allow").
func (c *compiler) entityDomains(x ruleCtx, r api.Rule, src, dst *compiledEntity) error {
	if len(r.Source.Domains) > 0 {
		return x.errorf("source.domains: domains name only an egress rule's destination")
	}
	egress := strings.Contains(x.field, "egress")
	allow := strings.EqualFold(r.Action, api.ActionAllow)
	if len(r.Destination.Domains) > 0 {
		if !egress || !allow {
			return x.errorf("destination.domains: only egress Allow rules may name domains")
		}
		ds, err := parseDomains("destination.domains", r.Destination.Domains)
		if err != nil {
			return x.errorf("%v", err)
		}
		if len(dst.nets) > 0 || len(dst.notNets) > 0 || dst.pos != nil || dst.neg != nil {
			return x.errorf("destination.domains: cannot be combined with destination nets or selectors")
		}
		dst.domains = ds
	}
	if egress && allow && dst.pos != nil {
		dst.setDomains = c.selectorDomains(dst.pos)
	}
	return nil
}
