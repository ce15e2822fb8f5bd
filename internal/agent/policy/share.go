package policy

import (
	"cmp"
	"slices"
	"strings"
)

// endpointChainPrefixes name the per-endpoint chains Compile emits: a
// workload's ingress (tw-) and egress (fw-), a host endpoint's ingress
// (fh-) and egress (th-).
var endpointChainPrefixes = []string{"tw-", "fw-", "fh-", "th-"}

// ShareEndpointChains is the third flat-cost step, a pure transform like
// SplitFamilies (docs/design/policy.md): endpoints whose chains have the
// same body — the same ordered policy list and profiles — share one
// chain, named after its content (ep-<hash of the rules>). A new local
// endpoint whose policies and profiles another already has then costs map
// and set elements only, no chain; one whose list changes moves to another
// chain by a map element update. Per packet nothing changes. It may follow
// SplitFamilies (the per-family endpoint chains are shared per family).
// rs is not modified.
func ShareEndpointChains(rs *Ruleset) *Ruleset {
	rename := map[string]string{}
	shared := map[string]*Chain{}
	hashes := map[bodyID]string{} // bodies Compile (or SplitFamilies) shared: hashed once
	for _, c := range rs.Chains {
		if c.Hook != nil || !isEndpointChain(c.Name) {
			continue
		}
		id := idOf(c.Rules)
		h, ok := hashes[id]
		if !ok || id.first == nil {
			var body strings.Builder
			for _, r := range c.Rules {
				body.WriteString(r.String())
				body.WriteByte('\n')
			}
			h = shortHash(body.String())
			hashes[id] = h
		}
		name := sharedChainPrefix + h
		if f := ChainFamily(c.Name); f != 0 {
			name = FamilyChain(name, f)
		}
		rename[c.Name] = name
		if shared[name] == nil {
			shared[name] = &Chain{Name: name, Rules: c.Rules}
		}
	}
	retarget := func(v Verdict) Verdict {
		if n, ok := rename[v.Chain]; ok && (v.Kind == Jump || v.Kind == Goto) {
			v.Chain = n
		}
		return v
	}
	out := &Ruleset{Sets: rs.Sets, Warnings: rs.Warnings, Quarantined: rs.Quarantined}
	for _, m := range rs.Maps {
		nm := &Map{Name: m.Name, Type: m.Type, Comment: m.Comment}
		for _, e := range m.Elements {
			nm.Elements = append(nm.Elements, MapElement{Key: e.Key, Verdict: retarget(e.Verdict)})
		}
		out.Maps = append(out.Maps, nm)
	}
	for _, c := range rs.Chains {
		if _, gone := rename[c.Name]; gone {
			continue
		}
		nc := &Chain{Name: c.Name, Hook: c.Hook}
		for _, r := range c.Rules {
			nc.Rules = append(nc.Rules, Rule{Matches: r.Matches, Stmts: r.Stmts, Verdict: retarget(r.Verdict)})
		}
		out.Chains = append(out.Chains, nc)
	}
	for _, c := range shared {
		// The shared bodies jump only to policy, profile and failsafe
		// chains, never to another endpoint chain: nothing to retarget.
		out.Chains = append(out.Chains, c)
	}
	slices.SortFunc(out.Chains, func(a, b *Chain) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// sharedChainPrefix names the endpoint chains ShareEndpointChains shares.
const sharedChainPrefix = "ep-"

func isEndpointChain(name string) bool {
	for _, p := range endpointChainPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
