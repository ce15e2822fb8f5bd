package policy

import (
	"cmp"
	"slices"
	"strings"
)

// The first step of the flat-cost ruleset (issue 15, docs/design/policy.md
// "Per-family dispatch"): SplitFamilies rewrites a compiled ruleset so that
// a packet never walks a rule of the other IP family. It is a pure
// transform of Compile's output, checked against it by the packet-walk
// oracle (policytest.Walk) on random states and packets; Compile stays the
// reference.

// familyDispatchMaps are the verdict maps whose elements lead into
// endpoint chains: each is split into one map per family.
var familyDispatchMaps = []string{MapFromWorkload, MapToWorkload, MapFromHost, MapToHost}

// FamilyChain names the IPv4 (family 4) or IPv6 copy of a chain: name_4
// or name_6. Only chains with a policy, profile, endpoint or failsafe
// prefix are copied, so no copy can take the name of another chain, and
// '_' is a character nft's parser takes in a chain name without quotes
// (':' is not: `nft list ruleset` would print a table `nft -f` cannot
// read back).
func FamilyChain(name string, family int) string {
	if family == 4 {
		return name + "_4"
	}
	return name + "_6"
}

// ChainFamily is the family of a per-family chain (FamilyChain: only
// packets of that family reach it), 0 for the others.
func ChainFamily(name string) int {
	switch {
	case strings.HasSuffix(name, "_4"):
		return 4
	case strings.HasSuffix(name, "_6"):
		return 6
	}
	return 0
}

// FamilyMap names the per-family copy of a dispatch map.
func FamilyMap(name string, family int) string {
	if family == 4 {
		return name + "4"
	}
	return name + "6"
}

// SplitFamilies returns a copy of rs in which every chain reachable from
// the endpoint dispatch maps (the endpoint, policy, profile and failsafe
// chains) exists once per family, holding only the rules that can match
// that family (without their family test), and the dispatch reaches them
// through one verdict map per family. rs is not modified.
func SplitFamilies(rs *Ruleset) *Ruleset {
	maps := map[string]bool{}
	for _, m := range familyDispatchMaps {
		maps[m] = true
	}
	closure := splitClosure(rs, maps)
	out := &Ruleset{Sets: rs.Sets, Warnings: rs.Warnings, Quarantined: rs.Quarantined}
	for _, m := range rs.Maps {
		if !maps[m.Name] {
			out.Maps = append(out.Maps, m)
			continue
		}
		for _, f := range []int{4, 6} {
			fm := &Map{Name: FamilyMap(m.Name, f), Type: m.Type, Comment: m.Comment}
			for _, e := range m.Elements {
				fm.Elements = append(fm.Elements, MapElement{Key: e.Key, Verdict: familyVerdict(e.Verdict, f, closure)})
			}
			out.Maps = append(out.Maps, fm)
		}
	}
	// Endpoints with the same policies share one body (Compile builds it
	// once): split it once, and the copies share it too.
	split := map[bodyID][2][]Rule{}
	for _, c := range rs.Chains {
		if !closure[c.Name] {
			out.Chains = append(out.Chains, &Chain{Name: c.Name, Hook: c.Hook, Rules: dispatchRules(c.Rules, maps, closure)})
			continue
		}
		id := idOf(c.Rules)
		both, ok := split[id]
		if !ok || id.first == nil {
			both = [2][]Rule{familyRules(c.Rules, 4, closure), familyRules(c.Rules, 6, closure)}
			split[id] = both
		}
		for i, f := range []int{4, 6} {
			out.Chains = append(out.Chains, &Chain{Name: FamilyChain(c.Name, f), Rules: both[i]})
		}
	}
	slices.SortFunc(out.Maps, func(a, b *Map) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Chains, func(a, b *Chain) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// bodyID identifies a rule slice by its memory: chains holding the same
// slice have the same body, so a transform of one serves all.
type bodyID struct {
	first *Rule
	n     int
}

func idOf(rules []Rule) bodyID {
	if len(rules) == 0 {
		return bodyID{}
	}
	return bodyID{&rules[0], len(rules)}
}

// splitClosure is the set of chains reachable from the dispatch maps'
// elements.
func splitClosure(rs *Ruleset, maps map[string]bool) map[string]bool {
	closure := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if closure[name] {
			return
		}
		c := rs.Chain(name)
		if c == nil {
			return
		}
		closure[name] = true
		for _, r := range c.Rules {
			if r.Verdict.Kind == Jump || r.Verdict.Kind == Goto {
				visit(r.Verdict.Chain)
			}
		}
	}
	for _, m := range rs.Maps {
		if maps[m.Name] {
			for _, e := range m.Elements {
				if e.Verdict.Kind == Jump || e.Verdict.Kind == Goto {
					visit(e.Verdict.Chain)
				}
			}
		}
	}
	return closure
}

func familyVerdict(v Verdict, f int, closure map[string]bool) Verdict {
	if (v.Kind == Jump || v.Kind == Goto) && closure[v.Chain] {
		v.Chain = FamilyChain(v.Chain, f)
	}
	return v
}

// familyRules keeps the rules of a chain that can match family f. A rule
// that reads no address drops its family test (the chain is only reached
// by packets of f); one that does keeps it: the kernel does not need it,
// but without it nft shows the address as a raw payload expression that
// `nft -f` cannot read back, and it costs one compare on the few rules a
// packet walks.
func familyRules(rules []Rule, f int, closure map[string]bool) []Rule {
	var out []Rule
	for _, r := range rules {
		other := false
		keep := readsAddress(r.Matches)
		var ms []Match
		for _, m := range r.Matches {
			if p, ok := m.(NFProto); ok {
				other = other || p.Family != f
				if !keep {
					continue
				}
			}
			ms = append(ms, m)
		}
		if other {
			continue
		}
		out = append(out, Rule{Matches: ms, Stmts: r.Stmts, Verdict: familyVerdict(r.Verdict, f, closure)})
	}
	return out
}

// readsAddress reports whether matches read a header field of one IP
// family (an address, or an ICMP type).
func readsAddress(ms []Match) bool {
	for _, m := range ms {
		switch m.(type) {
		case AddrPrefix, AddrSet, AddrPortSet, IfAddrSet, ICMP, ICMPTypes:
			return true
		}
	}
	return false
}

// dispatchRules rewrites the rules of a chain outside the closure: a
// lookup in a dispatch map, or a jump into the closure, becomes one rule
// per family.
func dispatchRules(rules []Rule, maps, closure map[string]bool) []Rule {
	var out []Rule
	for _, r := range rules {
		v := r.Verdict
		split := v.Kind == VMap && maps[v.Map] || (v.Kind == Jump || v.Kind == Goto) && closure[v.Chain]
		if !split {
			out = append(out, r)
			continue
		}
		for _, f := range []int{4, 6} {
			fv := familyVerdict(v, f, closure)
			if v.Kind == VMap {
				fv.Map = FamilyMap(v.Map, f)
			}
			ms := append([]Match{NFProto{Family: f}}, r.Matches...)
			out = append(out, Rule{Matches: ms, Stmts: r.Stmts, Verdict: fv})
		}
	}
	return out
}
