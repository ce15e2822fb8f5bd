package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// MergeRules is the second flat-cost step (docs/design/policy.md "Rule
// merging"), a pure transform of a compiled ruleset like SplitFamilies and
// checked the same way against Compile by the packet-walk oracle.
//
// A chain is cut into runs of consecutive rules that end the same way
// (the same statements and a terminal verdict: allow, deny, accept); a
// Log or Pass rule, or a jump, ends a run. Inside a run the order of the
// rules does not matter — whichever matches, the outcome is the same — so
// rules whose matches are equal but for their ports are merged into one
// rule matching the union of the ports (when that is one range, or a
// member already was a port set; see unionPorts), and then rules equal
// but for one address match into one rule matching the union of the
// addresses (a union set, named after its members so that membership
// changes stay element updates). rs is not modified.
func MergeRules(rs *Ruleset) *Ruleset {
	m := &merger{sets: map[string]*Set{}}
	for _, s := range rs.Sets {
		m.sets[s.Name] = s
	}
	out := &Ruleset{Maps: rs.Maps, Warnings: rs.Warnings, Quarantined: rs.Quarantined}
	// A body shared by many endpoint chains is merged once and stays
	// shared.
	done := map[bodyID][]Rule{}
	for _, c := range rs.Chains {
		id := idOf(c.Rules)
		rules, ok := done[id]
		if !ok || id == (bodyID{}) {
			rules = m.chain(c.Rules)
			done[id] = rules
		}
		out.Chains = append(out.Chains, &Chain{Name: c.Name, Hook: c.Hook, Rules: rules})
	}
	for _, s := range m.sets {
		out.Sets = append(out.Sets, s)
	}
	slices.SortFunc(out.Sets, func(a, b *Set) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

type merger struct {
	sets map[string]*Set // the ruleset's sets and the ones merging adds
}

// mergeable reports whether a rule may be merged with others of its run:
// it ends evaluation (allow, deny, accept) and neither logs nor passes.
func mergeable(r Rule) bool {
	switch r.Verdict.Kind {
	case Drop, Accept, Return:
	default:
		return false
	}
	for _, s := range r.Stmts {
		switch s := s.(type) {
		case SetMark:
			if s.Xor&MarkPass != 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func sameEnd(a, b Rule) bool {
	return a.Verdict == b.Verdict && slices.Equal(a.Stmts, b.Stmts)
}

func (m *merger) chain(rules []Rule) []Rule {
	var out []Rule
	eachRun(rules, func(seq []Rule, run bool) {
		if run {
			seq = m.mergeOn(seq, portSlot, m.unionPorts)
			seq = m.mergeOn(seq, addrSlot, m.unionAddrs)
		}
		out = append(out, seq...)
	})
	return out
}

// eachRun cuts rules into runs — consecutive mergeable rules that end
// alike — and calls f with each run (run true) and with each other rule on
// its own (run false), in order.
func eachRun(rules []Rule, f func(seq []Rule, run bool)) {
	for i := 0; i < len(rules); {
		if !mergeable(rules[i]) {
			f(rules[i:i+1], false)
			i++
			continue
		}
		j := i + 1
		for j < len(rules) && mergeable(rules[j]) && sameEnd(rules[i], rules[j]) {
			j++
		}
		f(rules[i:j], true)
		i = j
	}
}

// A slot finds the one match of a rule that merging may vary, and says
// what must be equal for two such matches to merge (their kind of key).
type slot func(ms []Match) (index int, kind string)

// portSlot is the rule's one positive port match.
func portSlot(ms []Match) (int, string) {
	found, kind := -1, ""
	for i, x := range ms {
		var d Direction
		switch x := x.(type) {
		case Port:
			if x.Neg {
				continue
			}
			d = x.Dir
		case PortSet:
			if x.Neg {
				continue
			}
			d = x.Dir
		default:
			continue
		}
		if found >= 0 {
			return -1, "" // two: leave the rule alone
		}
		found, kind = i, "port/"+dirName(d)
	}
	return found, kind
}

// addrSlot is the rule's first positive address match (prefix or set).
func addrSlot(ms []Match) (int, string) {
	for i, x := range ms {
		switch x := x.(type) {
		case AddrPrefix:
			if !x.Neg {
				return i, "addr/" + dirName(x.Dir) + "/" + itoa(familyOfAddr(x.Prefix.Addr()))
			}
		case AddrSet:
			if !x.Neg && !IsLearnedSet(x.Set) { // learned sets never join a union
				return i, "addr/" + dirName(x.Dir) + "/" + itoa(x.Family)
			}
		}
	}
	return -1, ""
}

func itoa(n int) string { return string(rune('0' + n)) }

func familyOfAddr(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// mergeOn groups the rules of a run that are equal but for their slot's
// match and replaces each group of two or more with one rule whose slot
// matches the union (built by union), at the place of its first member.
func (m *merger) mergeOn(run []Rule, sl slot, union func(kind string, ms []Match) (Match, bool)) []Rule {
	keys := make([]any, len(run)) // nil: the rule has no slot
	slots := make([]int, len(run))
	groups := map[any][]int{} // key → members, in order
	for i, r := range run {
		idx, kind := sl(r.Matches)
		slots[i] = idx
		if idx < 0 {
			continue
		}
		rest := slices.Delete(slices.Clone(r.Matches), idx, idx+1)
		keys[i] = slotKey{kind: kind, idx: idx, rest: keyOf(Rule{Matches: rest})}
		groups[keys[i]] = append(groups[keys[i]], i)
	}
	unions := map[any]Match{} // key → the union of its group, when it pays
	for k, g := range groups {
		if len(g) < 2 {
			continue
		}
		_, kind := sl(run[g[0]].Matches)
		var members []Match
		for _, j := range g {
			members = append(members, run[j].Matches[slots[j]])
		}
		if u, ok := union(kind, members); ok {
			unions[k] = u
		}
	}
	var out []Rule
	for i, r := range run {
		u, merged := unions[keys[i]]
		switch {
		case keys[i] == nil || !merged:
			out = append(out, r)
		case groups[keys[i]][0] == i:
			ms := slices.Clone(r.Matches)
			ms[slots[i]] = u
			out = append(out, Rule{Matches: ms, Stmts: r.Stmts, Verdict: r.Verdict})
		}
	}
	return out
}

// slotKey groups the rules of a run that are equal but for one slot.
type slotKey struct {
	kind string
	idx  int
	rest any // keyOf the rule without the slot's match
}

// smallRule is a rule of few matches and statements as a comparable
// value: the map key of a rule without rendering it.
type smallRule struct {
	n, ns   int
	matches [8]Match
	stmts   [4]Stmt
	verdict Verdict
}

// keyOf returns a comparable value equal for equal rules: a smallRule, or
// the rule's text when it has more matches or statements than one holds.
func keyOf(r Rule) any {
	if len(r.Matches) > 8 || len(r.Stmts) > 4 {
		return r.String()
	}
	k := smallRule{n: len(r.Matches), ns: len(r.Stmts), verdict: r.Verdict}
	copy(k.matches[:], r.Matches)
	copy(k.stmts[:], r.Stmts)
	return k
}

// unionPorts merges port matches into one Port or a port set. Rules that
// each compare one port range are merged only when the union is one range
// too: in the kernel a set lookup costs more than a few compares, which
// fail fast before the rule's address lookup (BenchmarkConnRate measured
// merging them into a set as slower).
func (m *merger) unionPorts(_ string, ms []Match) (Match, bool) {
	var ranges []Element
	var dir Direction
	anySet := false
	for _, x := range ms {
		switch x := x.(type) {
		case Port:
			dir = x.Dir
			ranges = append(ranges, Element{Port: x.Min, PortEnd: x.Max})
		case PortSet:
			dir, anySet = x.Dir, true
			ranges = append(ranges, m.sets[x.Set].Elements...)
		}
	}
	ranges = portRanges(ranges)
	if len(ranges) == 1 {
		return Port{Dir: dir, Min: ranges[0].Port, Max: ranges[0].PortEnd}, true
	}
	if !anySet {
		return nil, false
	}
	var key strings.Builder
	for i, e := range ranges {
		if i > 0 {
			key.WriteByte(',')
		}
		key.WriteString(renderPortRange(e.Port, e.PortEnd))
	}
	name := "p-" + shortHash(key.String())
	if m.sets[name] == nil {
		m.sets[name] = &Set{Name: name, Type: SetPort, Comment: truncateComment("ports " + key.String()), Elements: ranges}
	}
	return PortSet{Dir: dir, Set: name}, true
}

// unionAddrs merges address matches into one union set, named after its
// members (set names and literal prefixes), so the same union keeps its
// name when the members' elements change.
func (m *merger) unionAddrs(_ string, ms []Match) (Match, bool) {
	var nets []netip.Prefix
	var names []string
	var dir Direction
	family := 4
	for _, x := range ms {
		switch x := x.(type) {
		case AddrPrefix:
			dir, family = x.Dir, familyOfAddr(x.Prefix.Addr())
			nets = append(nets, x.Prefix)
			names = append(names, x.Prefix.String())
		case AddrSet:
			dir, family = x.Dir, x.Family
			for _, e := range m.sets[x.Set].Elements {
				nets = append(nets, e.Prefix)
			}
			names = append(names, "@"+x.Set)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	name := "u" + itoa(family) + "-" + shortHash(strings.Join(names, ","))
	if m.sets[name] == nil {
		m.sets[name] = &Set{Name: name, Type: addrSetType(family), Comment: truncateComment("union of " + strings.Join(names, " ")),
			Elements: prefixElements(nets), Members: names}
	}
	return AddrSet{Family: family, Dir: dir, Set: name}, true
}

// truncateComment makes s a set or map comment: at most 250 bytes, and
// no double quote (nft prints comments in double quotes without escaping
// them, so a selector's "x" in a comment made `nft list` print a table
// that `nft -f` cannot read back).
func truncateComment(s string) string {
	s = strings.ReplaceAll(s, `"`, "'")
	if len(s) > 250 {
		return s[:247] + "..."
	}
	return s
}
