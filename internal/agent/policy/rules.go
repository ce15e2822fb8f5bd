package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
)

// ruleCtx says where a rule comes from.
type ruleCtx struct {
	owner     string // "NetworkPolicy default/web", for messages
	field     string // "spec.ingress[2]"
	namespace string // namespace of a NetworkPolicy; "" for global policies and profiles
	logPrefix string
}

func (x ruleCtx) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s.%s", x.owner, x.field, fmt.Sprintf(format, args...))
}

const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// compiledEntity is a source or destination entity rule, parsed.
type compiledEntity struct {
	dir          Direction
	nets         []netip.Prefix
	notNets      []netip.Prefix
	pos          *predicate // selector/namespaceSelector/serviceAccounts; nil: no selector
	neg          *predicate // notSelector
	ports        []Element  // numeric port ranges (merged)
	portNames    []string
	notPorts     []Element
	notPortNames []string
	domains      []string // destination.domains, canonical (domains.go)
	setDomains   []string // allowedEgressDomains of the network sets pos matches (egress Allow rules)
}

// familySpecific reports whether matching this entity reads addresses.
func (e *compiledEntity) familySpecific() bool {
	return len(e.nets) > 0 || len(e.notNets) > 0 || len(e.domains) > 0 || e.pos != nil || e.neg != nil || len(e.portNames) > 0 || len(e.notPortNames) > 0
}

func familyNets(nets []netip.Prefix, family int) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range nets {
		if n.Addr().Is4() == (family == 4) {
			out = append(out, n)
		}
	}
	return out
}

// parsedRule is an API rule validated and parsed; emitRule turns it into
// nft rules.
type parsedRule struct {
	stmts    []Stmt
	verdict  Verdict
	families []int // 0: family-agnostic
	base     []Match
	src, dst *compiledEntity
}

// parseRule validates a rule; it registers no sets.
func (c *compiler) parseRule(x ruleCtx, r api.Rule) (*parsedRule, error) {
	if r.HTTP != nil {
		return nil, x.errorf("http: HTTP matches are not supported (Tabby has no L7 proxy)")
	}
	var stmts []Stmt
	var verdict Verdict
	switch strings.ToLower(r.Action) {
	case "allow":
		stmts, verdict = []Stmt{setBit(MarkAccept)}, Verdict{Kind: Return}
	case "deny":
		verdict = Verdict{Kind: Drop}
	case "log":
		stmts = []Stmt{Log{Prefix: x.logPrefix}}
	case "pass":
		stmts, verdict = []Stmt{setBit(MarkPass)}, Verdict{Kind: Return}
	default:
		return nil, x.errorf("action: %q is not Allow, Deny, Log or Pass", r.Action)
	}

	families := []int{4, 6}
	if r.IPVersion != nil {
		switch *r.IPVersion {
		case 4, 6:
			families = []int{*r.IPVersion}
		default:
			return nil, x.errorf("ipVersion: %d is not 4 or 6", *r.IPVersion)
		}
	}

	var base []Match
	var proto uint8
	if r.Protocol != nil {
		n, err := protoNumber("protocol", *r.Protocol, 0)
		if err != nil {
			return nil, x.errorf("%v", err)
		}
		proto = n
		switch n {
		case protoICMP:
			families = intersect(families, []int{4})
		case protoICMPv6:
			families = intersect(families, []int{6})
		}
		if len(families) == 0 {
			return nil, x.errorf("protocol: %s does not exist in IPv%d", *r.Protocol, *r.IPVersion)
		}
		base = append(base, L4Proto{Proto: n})
	}
	if r.NotProtocol != nil {
		n, err := protoNumber("notProtocol", *r.NotProtocol, 0)
		if err != nil {
			return nil, x.errorf("%v", err)
		}
		base = append(base, L4Proto{Proto: n, Neg: true})
	}

	icmpSpecific := false
	for _, f := range []struct {
		name string
		v    *api.ICMPFields
		neg  bool
	}{{"icmp", r.ICMP, false}, {"notICMP", r.NotICMP, true}} {
		if f.v == nil {
			continue
		}
		if proto != protoICMP && proto != protoICMPv6 {
			return nil, x.errorf("%s: needs protocol ICMP or ICMPv6", f.name)
		}
		if f.v.Type == nil {
			if f.v.Code != nil {
				return nil, x.errorf("%s.code: needs a type", f.name)
			}
			continue
		}
		if *f.v.Type < 0 || *f.v.Type > 254 {
			return nil, x.errorf("%s.type: %d is not in 0-254", f.name, *f.v.Type)
		}
		m := ICMP{Type: uint8(*f.v.Type), Neg: f.neg}
		if f.v.Code != nil {
			if *f.v.Code < 0 || *f.v.Code > 255 {
				return nil, x.errorf("%s.code: %d is not in 0-255", f.name, *f.v.Code)
			}
			m.HasCode, m.Code = true, uint8(*f.v.Code)
		}
		icmpSpecific = true
		base = append(base, m) // Family is filled in per family below
	}

	src, err := c.compileEntity(x, "source", r.Source, Src, proto)
	if err != nil {
		return nil, err
	}
	dst, err := c.compileEntity(x, "destination", r.Destination, Dst, proto)
	if err != nil {
		return nil, err
	}
	if err := c.entityDomains(x, r, src, dst); err != nil {
		return nil, err
	}
	// Nets and notNets restrict the rule to their families: like Felix,
	// a rule whose nets (or notNets) are all IPv4 is not rendered for IPv6.
	for _, nets := range [][]netip.Prefix{src.nets, src.notNets, dst.nets, dst.notNets} {
		if len(nets) == 0 {
			continue
		}
		var fs []int
		for _, f := range families {
			if len(familyNets(nets, f)) > 0 {
				fs = append(fs, f)
			}
		}
		families = fs
	}
	if len(families) == 0 {
		return nil, x.errorf("source/destination nets and notNets: no IP version is left that the rule can match")
	}

	specific := r.IPVersion != nil || icmpSpecific || proto == protoICMP || proto == protoICMPv6 ||
		src.familySpecific() || dst.familySpecific()
	if !specific {
		families = []int{0}
	}
	return &parsedRule{stmts: stmts, verdict: verdict, families: families, base: base, src: src, dst: dst}, nil
}

// emitRule builds the nft rules of a parsed rule, registering the sets
// they use.
func (c *compiler) emitRule(pr *parsedRule) []Rule {
	var out []Rule
	for _, f := range pr.families {
		var pre []Match
		if f != 0 {
			pre = append(pre, NFProto{Family: f})
		}
		for _, m := range pr.base {
			if im, ok := m.(ICMP); ok {
				im.Family = f
				m = im
			}
			pre = append(pre, m)
		}
		srcAlts := c.entityAlternatives(pr.src, f)
		dstAlts := c.entityAlternatives(pr.dst, f)
		for _, sa := range srcAlts {
			for _, da := range dstAlts {
				ms := slices.Concat(pre, sa, da)
				// Cheap comparisons first, set lookups last: a packet
				// that fails an early match skips the rest.
				slices.SortStableFunc(ms, func(a, b Match) int { return matchCost(a) - matchCost(b) })
				out = append(out, Rule{Matches: ms, Stmts: pr.stmts, Verdict: pr.verdict})
			}
		}
	}
	return out
}

// matchCost orders the matches of a rule. The family match must come
// before anything that reads an address; AND is commutative otherwise.
func matchCost(m Match) int {
	switch m.(type) {
	case NFProto:
		return 0
	case L4Proto:
		return 1
	case ICMP, ICMPTypes:
		return 2
	case Port:
		return 3
	case AddrPrefix:
		return 4
	case PortSet:
		return 5
	case AddrSet:
		return 6
	}
	return 7 // AddrPortSet and the rest
}

// setBit is the statement that sets mark bits: mark = (mark & ^bits) ^ bits.
func setBit(bits uint32) SetMark { return SetMark{And: ^bits, Xor: bits} }

func intersect(a, b []int) []int {
	var out []int
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// compileEntity parses and validates a source or destination.
func (c *compiler) compileEntity(x ruleCtx, side string, er api.EntityRule, dir Direction, proto uint8) (*compiledEntity, error) {
	e := &compiledEntity{dir: dir}
	if er.Services != nil {
		return nil, x.errorf("%s.services: service matches are not supported", side)
	}
	var err error
	if e.nets, err = parseNets(side+".nets", er.Nets); err != nil {
		return nil, x.errorf("%v", err)
	}
	if e.notNets, err = parseNets(side+".notNets", er.NotNets); err != nil {
		return nil, x.errorf("%v", err)
	}

	if er.Selector != "" || er.NotSelector != "" || er.NamespaceSelector != "" || er.ServiceAccounts != nil {
		p := &predicate{scope: scopeAll}
		switch {
		case er.NamespaceSelector != "":
			nsSel, err := c.parseSelector(side+".namespaceSelector", er.NamespaceSelector)
			if err != nil {
				return nil, x.errorf("%v", err)
			}
			p.scope, p.nsSel = scopeNSSel, nsSel
			if nsSel.IsGlobal() {
				p.scope, p.nsSel = scopeGlobal, nil
			}
		case x.namespace != "":
			p.scope, p.namespace = scopeNamespace, x.namespace
		}
		if er.Selector != "" {
			sel, err := c.parseSelector(side+".selector", er.Selector)
			if err != nil {
				return nil, x.errorf("%v", err)
			}
			p.sel = sel
		}
		if sa := er.ServiceAccounts; sa != nil {
			p.hasSA = true
			p.saNames = slices.Sorted(slices.Values(sa.Names))
			p.saNames = slices.Compact(p.saNames)
			if sa.Selector != "" {
				saSel, err := c.parseSelector(side+".serviceAccounts.selector", sa.Selector)
				if err != nil {
					return nil, x.errorf("%v", err)
				}
				p.saSel = saSel
			}
		}
		// A global rule with only notSelector has no positive selector.
		if p.scope != scopeAll || p.sel != nil || p.hasSA {
			p.computeKey()
			e.pos = p
		}
	}
	if er.NotSelector != "" {
		sel, err := c.parseSelector(side+".notSelector", er.NotSelector)
		if err != nil {
			return nil, x.errorf("%v", err)
		}
		e.neg = &predicate{scope: scopeAll, sel: sel}
		e.neg.computeKey()
	}

	for _, pl := range []struct {
		name  string
		in    []api.Port
		nums  *[]Element
		names *[]string
	}{{"ports", er.Ports, &e.ports, &e.portNames}, {"notPorts", er.NotPorts, &e.notPorts, &e.notPortNames}} {
		if len(pl.in) == 0 {
			continue
		}
		if !api.Protocol(fmt.Sprint(proto)).SupportsPorts() {
			return nil, x.errorf("%s.%s: ports need protocol TCP, UDP, SCTP or UDPLite", side, pl.name)
		}
		for i, p := range pl.in {
			switch {
			case p.Invalid != "":
				return nil, x.errorf("%s.%s[%d]: %q is not a port, range or port name", side, pl.name, i, p.Invalid)
			case p.PortName != "":
				*pl.names = append(*pl.names, p.PortName)
			case p.MinPort > p.MaxPort:
				return nil, x.errorf("%s.%s[%d]: range %d:%d is empty", side, pl.name, i, p.MinPort, p.MaxPort)
			default:
				*pl.nums = append(*pl.nums, Element{Port: p.MinPort, PortEnd: p.MaxPort})
			}
		}
		*pl.nums = portRanges(*pl.nums)
		*pl.names = slices.Compact(slices.Sorted(slices.Values(*pl.names)))
	}
	return e, nil
}

// entityAlternatives returns the ways an entity can match in one family
// (0: family-agnostic): the rule is emitted once per alternative. Every
// alternative holds the AND of nets, notNets, selectors and notPorts, plus
// one way to match ports (numbers, or one of the named ports).
func (c *compiler) entityAlternatives(e *compiledEntity, family int) [][]Match {
	var common []Match
	// Cheap matches first: ports, then address lookups.
	if len(e.notPorts) == 1 {
		common = append(common, Port{Dir: e.dir, Min: e.notPorts[0].Port, Max: e.notPorts[0].PortEnd, Neg: true})
	} else if len(e.notPorts) > 1 {
		common = append(common, PortSet{Dir: e.dir, Set: c.portSet(e.notPorts), Neg: true})
	}
	if family != 0 {
		for _, n := range []struct {
			nets []netip.Prefix
			neg  bool
		}{{e.nets, false}, {e.notNets, true}} {
			elems := prefixElements(familyNets(n.nets, family))
			if len(elems) == 1 {
				common = append(common, AddrPrefix{Dir: e.dir, Prefix: elems[0].Prefix, Neg: n.neg})
			} else if len(elems) > 1 {
				common = append(common, AddrSet{Family: family, Dir: e.dir, Set: c.netsSet(elems, family), Neg: n.neg})
			}
		}
		if e.pos != nil {
			common = append(common, AddrSet{Family: family, Dir: e.dir, Set: c.selectorSet(e.pos, family)})
		}
		if e.neg != nil {
			common = append(common, AddrSet{Family: family, Dir: e.dir, Set: c.selectorSet(e.neg, family), Neg: true})
		}
		for _, n := range e.notPortNames {
			common = append(common, AddrPortSet{Family: family, Dir: e.dir, Set: c.namedPortSet(c.portOwners(e), n, family), Neg: true})
		}
	}
	if len(e.ports) == 0 && len(e.portNames) == 0 {
		return c.domainAlternatives(e, family, [][]Match{common})
	}
	var alts [][]Match
	if len(e.ports) == 1 {
		alts = append(alts, slices.Concat([]Match{Port{Dir: e.dir, Min: e.ports[0].Port, Max: e.ports[0].PortEnd}}, common))
	} else if len(e.ports) > 1 {
		alts = append(alts, slices.Concat([]Match{PortSet{Dir: e.dir, Set: c.portSet(e.ports)}}, common))
	}
	for _, n := range e.portNames {
		alts = append(alts, slices.Concat(common, []Match{AddrPortSet{Family: family, Dir: e.dir, Set: c.namedPortSet(c.portOwners(e), n, family)}}))
	}
	return c.domainAlternatives(e, family, alts)
}

// portOwners is the predicate whose entities' named ports a rule refers to:
// the entity's selector, or every entity when it has none.
func (c *compiler) portOwners(e *compiledEntity) *predicate {
	if e.pos != nil {
		return e.pos
	}
	p := &predicate{scope: scopeAll}
	p.computeKey()
	return p
}
