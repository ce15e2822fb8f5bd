package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The last flat-cost steps (docs/design/policy.md "Flat cost per new
// connection"), pure transforms checked against Compile by the packet-walk
// oracle like SplitFamilies and MergeRules:
//
//   - InlinePolicies copies the rules of the policies and profiles an
//     endpoint chain jumps to into that chain, where doing so cannot change
//     a verdict, so the rules of all of an endpoint's policies form runs
//     that MergeRules and DispatchPorts work across, not one policy at a
//     time.
//   - DispatchPorts turns a sequence of rules that each admit one protocol
//     and a few destination ports (allows, denies and logs) into one lookup
//     in a verdict map keyed by (protocol, port), whose elements jump to a
//     small chain holding the rules of that port in order (their peers
//     merged into one set where they can be): a new connection walks a few
//     rules whatever the number of policies. Chains of equal bodies are shared (named after their
//     content), so a port admitted from the same peers by many policies
//     costs one chain.
//   - Prune drops the chains nothing reaches any more.
//
// Flatten is the whole pipeline the agent programs.

// Flatten returns the flat-cost form of a compiled ruleset: families
// split, policies inlined, runs merged and dispatched by port, endpoint
// chains shared, unreachable chains dropped. rs is not modified.
func Flatten(rs *Ruleset) *Ruleset { return Prune(flattenUnpruned(rs)) }

// flattenUnpruned is Flatten before Prune: it still holds every set the
// transforms made, also the unions a later union absorbed (the incremental
// Engine reads their members).
func flattenUnpruned(rs *Ruleset) *Ruleset {
	// Sharing first: endpoints with the same policy list share a chain
	// before its policies are inlined, so each list is inlined, merged and
	// dispatched once.
	// Dispatch before merging: most inlined rules leave for port chains,
	// so merging afterwards works on the few left and on small chains.
	out := ShareEndpointChains(SplitFamilies(rs))
	out = InlinePolicies(out)
	out = DispatchPorts(out)
	out = MergeRules(out)
	return TrimNAT(out)
}

// TrimNAT drops the NAT base chains nothing needs: the port-mapping
// chains (nat-prerouting, nat-output) while no local endpoint maps a host
// port, and each natOutgoing rule of nat-postrouting whose pool set is
// empty (the chain with its last rule). A NAT hook with no chain costs a
// new connection nothing; an empty one still makes the kernel run it. The
// verdicts are the same: those chains only ever accept. rs is not
// modified.
func TrimNAT(rs *Ruleset) *Ruleset {
	out := &Ruleset{Sets: rs.Sets, Maps: rs.Maps, Warnings: rs.Warnings, Quarantined: rs.Quarantined}
	hostPorts := rs.Map(MapHostPorts)
	for _, c := range rs.Chains {
		switch {
		case c.Hook == nil || c.Hook.Type != TypeNAT:
			out.Chains = append(out.Chains, c)
		case c.Name == "nat-postrouting":
			var rules []Rule
			for _, r := range c.Rules {
				if !readsEmptySet(rs, r) {
					rules = append(rules, r)
				}
			}
			if len(rules) > 0 {
				out.Chains = append(out.Chains, &Chain{Name: c.Name, Hook: c.Hook, Rules: rules})
			}
		case c.Name == "nat-prerouting" || c.Name == "nat-output":
			if hostPorts != nil && len(hostPorts.Elements) > 0 {
				out.Chains = append(out.Chains, c)
			}
		default:
			out.Chains = append(out.Chains, c)
		}
	}
	return out
}

// readsEmptySet reports whether a rule requires membership of an empty
// set, so it never matches.
func readsEmptySet(rs *Ruleset, r Rule) bool {
	for _, m := range r.Matches {
		if a, ok := m.(AddrSet); ok && !a.Neg && !IsLearnedSet(a.Set) {
			if s := rs.Set(a.Set); s != nil && len(s.Elements) == 0 {
				return true
			}
		}
	}
	return false
}

// acceptReturn is the rule an endpoint chain follows each policy jump with.
var acceptReturn = Rule{Matches: []Match{Mark{Mask: MarkAccept, Value: MarkAccept}}, Verdict: Verdict{Kind: Return}}

// InlinePolicies replaces, in every endpoint chain, each unguarded
// `jump X` followed by the accept test `meta mark & accept == accept
// return` with the rules of X, when X can be inlined: its rules never
// jump, go to or look up a map, never pass (set the pass bit), and every
// return allows (sets the accept bit). The accept bit is clear whenever an
// endpoint chain runs a jump (a set bit returns at once), so an inlined
// allow returning from the endpoint chain does what the jump, the return
// from X and the accept test did. rs is not modified.
func InlinePolicies(rs *Ruleset) *Ruleset {
	inlinable := map[string]bool{}
	for _, c := range rs.Chains {
		inlinable[c.Name] = c.Hook == nil && canInline(c.Rules)
	}
	out := &Ruleset{Sets: rs.Sets, Maps: rs.Maps, Warnings: rs.Warnings, Quarantined: rs.Quarantined}
	// Endpoints with the same policies share their body (Compile builds
	// it once): inline it once, and keep it shared.
	done := map[bodyID][]Rule{}
	for _, c := range rs.Chains {
		if c.Hook != nil || !isEndpointChain(c.Name) && !strings.HasPrefix(c.Name, sharedChainPrefix) {
			out.Chains = append(out.Chains, c)
			continue
		}
		id := idOf(c.Rules)
		if rules, ok := done[id]; ok && id != (bodyID{}) {
			out.Chains = append(out.Chains, &Chain{Name: c.Name, Rules: rules})
			continue
		}
		var rules []Rule
		for i := 0; i < len(c.Rules); i++ {
			r := c.Rules[i]
			if r.Verdict.Kind == Jump && len(r.Matches) == 0 && len(r.Stmts) == 0 && inlinable[r.Verdict.Chain] &&
				i+1 < len(c.Rules) && c.Rules[i+1].Equal(acceptReturn) {
				rules = append(rules, rs.Chain(r.Verdict.Chain).Rules...)
				i++ // the accept test
				continue
			}
			rules = append(rules, r)
		}
		done[id] = rules
		out.Chains = append(out.Chains, &Chain{Name: c.Name, Rules: rules})
	}
	return out
}

// setsAccept reports whether m sets the accept bit, whatever it was.
func setsAccept(m SetMark) bool { return m.And&MarkAccept == 0 && m.Xor&MarkAccept != 0 }

// keepsPass reports whether m leaves the pass bit as it was.
func keepsPass(m SetMark) bool { return m.And&MarkPass != 0 && m.Xor&MarkPass == 0 }

func canInline(rules []Rule) bool {
	for _, r := range rules {
		allows := false
		for _, s := range r.Stmts {
			switch s := s.(type) {
			case SetMark:
				if !keepsPass(s) {
					return false
				}
				allows = allows || setsAccept(s)
			case Log:
			default:
				return false
			}
		}
		switch r.Verdict.Kind {
		case Continue, Drop:
		case Return:
			if !allows {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// dispatchMin is the smallest number of port rules in a run worth a map
// lookup: below it the rules' compares are as cheap.
const dispatchMin = 4

// dispatchSpan is the widest port range a rule may have to be dispatched:
// the map holds one element per port.
const dispatchSpan = 16

// DispatchPorts rewrites every non-base chain: inside each run (see
// MergeRules) the rules that admit one protocol and a destination port
// range of at most dispatchSpan ports are moved first (order does not
// matter in a run), and every sequence of at least dispatchMin such rules
// — allows, denies and logs alike, across runs — leaves the chain. In its
// place one rule per protocol looks (protocol, port) up in a verdict map
// whose elements jump to a chain holding the sequence's rules of that port,
// in order, without their protocol and port matches and with their runs
// merged; a sequence that can allow is followed by the accept test, so a
// port chain's allow returns from the chain as the rule it came from did.
// A packet can only match the rules of its own port, so the port chain
// decides it as the sequence did. rs is not modified.
func DispatchPorts(rs *Ruleset) *Ruleset {
	d := &dispatcher{merger: merger{sets: map[string]*Set{}}, chains: map[string]*Chain{}, named: map[any]string{}}
	for _, s := range rs.Sets {
		d.sets[s.Name] = s
	}
	out := &Ruleset{Maps: slices.Clone(rs.Maps), Warnings: rs.Warnings, Quarantined: rs.Quarantined}
	// A body shared by many endpoint chains is dispatched once per family
	// (the port chains and maps it makes are named after their content).
	type key struct {
		id     bodyID
		suffix string
	}
	done := map[key][]Rule{}
	for _, c := range rs.Chains {
		if c.Hook != nil {
			out.Chains = append(out.Chains, c)
			continue
		}
		k := key{idOf(c.Rules), familySuffix(c.Name)}
		rules, ok := done[k]
		if !ok || k.id == (bodyID{}) {
			rules = d.chain(c.Name, c.Rules)
			done[k] = rules
		}
		out.Chains = append(out.Chains, &Chain{Name: c.Name, Rules: rules})
	}
	for _, c := range d.chains {
		out.Chains = append(out.Chains, c)
	}
	out.Maps = append(out.Maps, d.maps...)
	for _, s := range d.sets {
		out.Sets = append(out.Sets, s)
	}
	slices.SortFunc(out.Sets, func(a, b *Set) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Maps, func(a, b *Map) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Chains, func(a, b *Chain) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

type dispatcher struct {
	merger
	chains  map[string]*Chain // port chains by name
	named   map[any]string    // a one-rule body's keyOf → its chain's name
	maps    []*Map
	haveMap map[string]bool // names in maps
}

func (d *dispatcher) chain(name string, rules []Rule) []Rule {
	rules = hoistDispatchable(rules)
	var out []Rule
	for i := 0; i < len(rules); {
		if !inSequence(rules[i]) {
			out = append(out, rules[i])
			i++
			continue
		}
		j := i + 1
		for j < len(rules) && inSequence(rules[j]) {
			j++
		}
		out = append(out, d.sequence(name, rules[i:j])...)
		i = j
	}
	return out
}

// hoistDispatchable moves, inside every run (consecutive mergeable rules
// that end alike, where order does not matter), the dispatchable rules
// before the others, so that runs of different ends join into longer
// sequences of dispatchable rules.
func hoistDispatchable(rules []Rule) []Rule {
	out := make([]Rule, 0, len(rules))
	eachRun(rules, func(seq []Rule, run bool) {
		var rest []Rule
		for _, r := range seq {
			if _, ok := dispatchable(r); ok || !run {
				out = append(out, r)
			} else {
				rest = append(rest, r)
			}
		}
		out = append(out, rest...)
	})
	return out
}

// inSequence reports whether a rule can leave its chain for a port chain:
// it is dispatchable and ends in a way a port chain can end for it — a
// drop or accept (final there too), an allowing return (the accept test
// follows the lookup), or no verdict with only log statements (evaluation
// goes on with the port's later rules, then after the lookup, where no
// other rule of the sequence can match the packet's port).
func inSequence(r Rule) bool {
	if _, ok := dispatchable(r); !ok {
		return false
	}
	switch r.Verdict.Kind {
	case Drop, Accept:
		return true
	case Return:
		return mergeable(r) && endsDispatchable(r)
	case Continue:
		for _, s := range r.Stmts {
			if _, ok := s.(Log); !ok {
				return false
			}
		}
		return true
	}
	return false
}

// portRule is a dispatchable rule: its protocol, port range, and the rule
// without those two matches.
type portRule struct {
	proto    uint8
	min, max uint16
	rest     Rule
}

// dispatchable splits a rule into protocol, destination port range and
// the rest, when it has exactly one positive protocol with ports and one
// positive destination port range of at most dispatchSpan ports.
func dispatchable(r Rule) (portRule, bool) {
	pi, po := -1, -1
	for i, m := range r.Matches {
		switch m := m.(type) {
		case L4Proto:
			if m.Neg || !protoHasPorts(m.Proto) || pi >= 0 {
				return portRule{}, false
			}
			pi = i
		case Port:
			if m.Dir != Dst {
				continue
			}
			if m.Neg || po >= 0 || int(m.Max)-int(m.Min) >= dispatchSpan {
				return portRule{}, false
			}
			po = i
		case PortSet, AddrPortSet:
			if p, ok := m.(PortSet); ok && p.Dir != Dst {
				continue
			}
			return portRule{}, false
		}
	}
	if pi < 0 || po < 0 {
		return portRule{}, false
	}
	p := r.Matches[po].(Port)
	var rest []Match
	for i, m := range r.Matches {
		if i != pi && i != po {
			rest = append(rest, m)
		}
	}
	return portRule{proto: r.Matches[pi].(L4Proto).Proto, min: p.Min, max: p.Max, rest: Rule{Matches: rest, Stmts: r.Stmts, Verdict: r.Verdict}}, true
}

func protoHasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 || p == 136 }

// sequence replaces a sequence of inSequence rules, when it holds at
// least dispatchMin, by the lookup of (protocol, destination port) in a
// verdict map whose elements jump to a chain holding, in order, the rules
// of that port (without their protocol and port matches, runs merged): a
// packet can only match rules of its own port, so walking those alone
// decides it as walking the whole sequence did.
func (d *dispatcher) sequence(chain string, seq []Rule) []Rule {
	if len(seq) < dispatchMin {
		return seq
	}
	type key struct {
		proto uint8
		port  uint16
	}
	byPort := map[key][]Rule{}
	var protos []uint8
	allows := false
	for _, r := range seq {
		p, _ := dispatchable(r)
		allows = allows || r.Verdict.Kind == Return
		if !slices.Contains(protos, p.proto) {
			protos = append(protos, p.proto)
		}
		for port := int(p.min); port <= int(p.max); port++ {
			k := key{p.proto, uint16(port)}
			byPort[k] = append(byPort[k], p.rest)
		}
	}
	suffix := familySuffix(chain)
	m := &Map{Type: MapProtoPort}
	m.Elements = make([]MapElement, 0, len(byPort))
	for k, rules := range byPort {
		target := d.portChain(rules, suffix)
		m.Elements = append(m.Elements, MapElement{Key: Element{Proto: k.proto, Port: k.port}, Verdict: Verdict{Kind: Jump, Chain: target}})
	}
	slices.SortFunc(m.Elements, func(a, b MapElement) int { return a.Key.Compare(b.Key) })
	body := make([]byte, 0, 32*len(m.Elements))
	for _, e := range m.Elements {
		body = strconv.AppendUint(body, uint64(e.Key.Proto), 10)
		body = append(body, '/')
		body = strconv.AppendUint(body, uint64(e.Key.Port), 10)
		body = append(body, '>')
		body = append(body, e.Verdict.Chain...)
		body = append(body, ',')
	}
	m.Name = "pd-" + shortHash(string(body)) + strings.TrimPrefix(suffix, "_")
	m.Comment = truncateComment(fmt.Sprintf("ports of %s: %d elements", chain, len(m.Elements)))
	if !d.haveMap[m.Name] {
		if d.haveMap == nil {
			d.haveMap = map[string]bool{}
		}
		d.haveMap[m.Name] = true
		d.maps = append(d.maps, m)
	}
	slices.Sort(protos)
	var out []Rule
	for _, p := range protos {
		out = append(out, Rule{Matches: []Match{L4Proto{Proto: p}}, Verdict: Verdict{Kind: VMap, Map: m.Name, Key: KeyProtoDport}})
	}
	if allows {
		out = append(out, acceptReturn)
	}
	return out
}

// endsDispatchable reports whether a run ending like r can leave its
// rules to port chains: a drop or accept ends evaluation there too, and a
// return that allows is followed by the accept test.
func endsDispatchable(r Rule) bool {
	switch r.Verdict.Kind {
	case Drop, Accept:
		return true
	case Return:
		for _, s := range r.Stmts {
			if m, ok := s.(SetMark); ok && setsAccept(m) {
				return true
			}
		}
	}
	return false
}

// portChain returns the name of the shared chain holding rules, creating
// it on first use; its name is its content's.
func (d *dispatcher) portChain(rules []Rule, suffix string) string {
	var key any
	if len(rules) == 1 {
		key = [2]any{keyOf(rules[0]), suffix}
		if name, ok := d.named[key]; ok {
			return name
		}
		// Names are content hashes, the same in every compile: a rule
		// seen by an earlier compile is not rendered and hashed again.
		if name, ok := portChainNames.get(key); ok {
			if d.chains[name] == nil {
				d.chains[name] = &Chain{Name: name, Rules: rules}
			}
			d.named[key] = name
			return name
		}
	}
	var body strings.Builder
	for _, r := range rules {
		body.WriteString(r.String())
		body.WriteByte('\n')
	}
	name := "pc-" + shortHash(body.String()) + suffix
	if d.chains[name] == nil {
		d.chains[name] = &Chain{Name: name, Rules: rules}
	}
	if key != nil {
		d.named[key] = name
		portChainNames.put(key, name)
	}
	return name
}

// portChainNames remembers the name of every one-rule port chain across
// compiles (an agent compiles the same rules again and again). Bounded:
// emptied when it holds more than nameCacheMax.
var portChainNames nameCache

const nameCacheMax = 1 << 18

type nameCache struct {
	mu sync.Mutex
	m  map[any]string
}

func (c *nameCache) get(k any) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *nameCache) put(k any, v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= nameCacheMax {
		c.m = map[any]string{}
	}
	c.m[k] = v
}

// familySuffix is the "_4" or "_6" of a per-family chain, or "".
func familySuffix(chain string) string {
	if ChainFamily(chain) != 0 {
		return chain[len(chain)-2:]
	}
	return ""
}

// Prune returns rs without the non-base chains, maps and sets that nothing
// reaches from a base chain. rs is not modified.
func Prune(rs *Ruleset) *Ruleset {
	chains, maps, sets := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var visitChain func(string)
	verdict := func(v Verdict) {
		switch v.Kind {
		case Jump, Goto:
			visitChain(v.Chain)
		case VMap:
			if maps[v.Map] {
				return
			}
			maps[v.Map] = true
			if m := rs.Map(v.Map); m != nil {
				for _, e := range m.Elements {
					if e.Verdict.Kind == Jump || e.Verdict.Kind == Goto {
						visitChain(e.Verdict.Chain)
					}
				}
			}
		}
	}
	visitChain = func(name string) {
		if chains[name] {
			return
		}
		chains[name] = true
		c := rs.Chain(name)
		if c == nil {
			return
		}
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				if s := matchSet(m); s != "" {
					sets[s] = true
				}
			}
			verdict(r.Verdict)
		}
	}
	for _, c := range rs.Chains {
		if c.Hook != nil {
			visitChain(c.Name)
		}
	}
	out := &Ruleset{Warnings: rs.Warnings, Quarantined: rs.Quarantined}
	for _, c := range rs.Chains {
		if chains[c.Name] {
			out.Chains = append(out.Chains, c)
		}
	}
	for _, m := range rs.Maps {
		if maps[m.Name] {
			out.Maps = append(out.Maps, m)
		}
	}
	for _, s := range rs.Sets {
		if sets[s.Name] || keptSet(s.Name) {
			out.Sets = append(out.Sets, s)
		}
	}
	return out
}

// matchSet is the name of the set a match reads, or "".
func matchSet(m Match) string {
	switch m := m.(type) {
	case AddrSet:
		return m.Set
	case PortSet:
		return m.Set
	case AddrPortSet:
		return m.Set
	case IfAddrSet:
		return m.Set
	}
	return ""
}

// keptSet reports the sets every ruleset has, referenced or not: the
// driver reads the workload address sets to flush conntrack.
func keptSet(name string) bool {
	switch name {
	case SetWorkloadSrc4, SetWorkloadSrc6, SetPools4, SetPools6, SetNATPools4, SetNATPools6:
		return true
	}
	return false
}
