package flowlog

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// packet is what a replay sees of a flow's first packet at one hook.
type packet struct {
	hook               policy.HookPoint
	family             int
	iif, oif           string
	src, dst           netip.Addr
	proto              uint8
	sport, dport       uint16
	icmpType, icmpCode uint8
	daddrLocal         bool
}

// decision is what one endpoint chain (tw-/fw-/fh-/th-) decided.
type decision struct {
	chain   string // the endpoint chain ("" when a base chain decided)
	ingress bool   // tw-/fh-: traffic into the endpoint
	allow   bool
	// origin of the deciding rule (nil: no policy or profile, see
	// defaultName), rule its API index (-1: the end of a tier, or no
	// profile allowed it).
	origin      *policy.ChainOrigin
	rule        int
	defaultName string
}

// replay walks p through the filter base chains of its hook in rs (the
// reference form, with origins) as netfilter would, and returns the
// decision of every endpoint chain it entered. A packet dropped outside an
// endpoint chain (dispatch, anti-spoofing, endpoint to host) gets one
// decision with chain "".
func replay(rs *policy.Ruleset, p packet) ([]decision, error) {
	var bases []*policy.Chain
	for _, c := range rs.Chains {
		if c.Hook != nil && c.Hook.Type == policy.TypeFilter && c.Hook.Hook == p.hook {
			bases = append(bases, c)
		}
	}
	slices.SortStableFunc(bases, func(a, b *policy.Chain) int { return cmp.Compare(a.Hook.Priority, b.Hook.Priority) })
	w := &walker{rs: rs, p: p}
	for _, b := range bases {
		accept, err := w.base(b)
		if err != nil {
			return w.out, err
		}
		if !accept {
			break
		}
	}
	return w.out, nil
}

type walker struct {
	rs   *policy.Ruleset
	p    packet
	mark uint32
	out  []decision

	// the endpoint chain being walked, and in it the last policy or
	// profile chain entered and the last rule that set MarkAccept
	ep         string
	epDepth    int
	lastPolicy string
	acceptBy   string
	acceptRule int
}

type frame struct {
	chain *policy.Chain
	next  int
}

func endpointChain(name string) (ok, ingress bool) {
	switch {
	case strings.HasPrefix(name, "tw-"), strings.HasPrefix(name, "fh-"):
		return true, true
	case strings.HasPrefix(name, "fw-"), strings.HasPrefix(name, "th-"):
		return true, false
	}
	return false, false
}

func (w *walker) origin(chain string) *policy.ChainOrigin {
	if o, ok := w.rs.Origins[chain]; ok {
		return &o
	}
	return nil
}

func (w *walker) ruleOf(chain string, i int) int {
	o, ok := w.rs.Origins[chain]
	if !ok || i < 0 || i >= len(o.Rules) {
		return -1
	}
	return o.Rules[i]
}

// leaveEndpoint records the decision of the endpoint chain being left;
// chain and rule are where a drop (or a plain accept) happened.
func (w *walker) leaveEndpoint(allow bool, dropChain string, dropRule int) {
	_, ingress := endpointChain(w.ep)
	d := decision{chain: w.ep, ingress: ingress, allow: allow, rule: -1}
	switch {
	case allow && w.acceptBy != "":
		d.origin, d.rule = w.origin(w.acceptBy), w.ruleOf(w.acceptBy, w.acceptRule)
	case !allow && w.origin(dropChain) != nil:
		d.origin, d.rule = w.origin(dropChain), w.ruleOf(dropChain, dropRule)
	case !allow && w.lastPolicy != "":
		// The end of a tier (or no profile allowed it): named after the
		// last policy (profile) evaluated, rule -1, as Calico does.
		d.origin = w.origin(w.lastPolicy)
	case allow && dropChain != "":
		d.defaultName = dropChain
	default:
		d.defaultName = w.ep
	}
	w.out = append(w.out, d)
	w.ep, w.lastPolicy, w.acceptBy = "", "", ""
}

// base walks one base chain; its policy is accept.
func (w *walker) base(b *policy.Chain) (bool, error) {
	stack := []frame{{chain: b}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next >= len(top.chain.Rules) {
			stack = w.pop(stack)
			continue
		}
		i := top.next
		r := top.chain.Rules[i]
		top.next++
		ok, err := w.matches(r.Matches)
		if err != nil {
			return false, fmt.Errorf("chain %s rule %d: %w", top.chain.Name, i, err)
		}
		if !ok {
			continue
		}
		for _, s := range r.Stmts {
			if m, ok := s.(policy.SetMark); ok {
				before := w.mark
				w.mark = (w.mark & m.And) ^ m.Xor
				if w.mark&policy.MarkAccept != 0 && before&policy.MarkAccept == 0 {
					w.acceptBy, w.acceptRule = top.chain.Name, i
				}
			}
		}
		v := r.Verdict
		if v.Kind == policy.VMap {
			var found bool
			if v, found, err = w.lookup(v); err != nil {
				return false, fmt.Errorf("chain %s rule %d: %w", top.chain.Name, i, err)
			}
			if !found {
				continue
			}
		}
		switch v.Kind {
		case policy.Continue:
		case policy.Accept:
			if w.ep != "" {
				// An accept inside an endpoint chain: the failsafe ports.
				w.leaveEndpoint(true, top.chain.Name, 0)
			}
			return true, nil
		case policy.Drop:
			if w.ep != "" {
				w.leaveEndpoint(false, top.chain.Name, i)
			} else {
				w.out = append(w.out, decision{rule: -1, defaultName: top.chain.Name})
			}
			return false, nil
		case policy.Return:
			stack = w.pop(stack)
		case policy.Jump, policy.Goto:
			c := w.rs.Chain(v.Chain)
			if c == nil {
				return false, fmt.Errorf("chain %s rule %d: to missing chain %q", top.chain.Name, i, v.Chain)
			}
			if v.Kind == policy.Goto {
				stack = w.pop(stack)
			}
			if len(stack) >= 16 {
				return false, fmt.Errorf("chain %s rule %d: jumps nest too deep", top.chain.Name, i)
			}
			if ok, _ := endpointChain(c.Name); ok && w.ep == "" {
				w.ep, w.epDepth, w.lastPolicy, w.acceptBy = c.Name, len(stack), "", ""
			} else if w.ep != "" && w.origin(c.Name) != nil {
				w.lastPolicy = c.Name
			}
			stack = append(stack, frame{chain: c})
		default:
			return false, fmt.Errorf("chain %s rule %d: verdict %d", top.chain.Name, i, v.Kind)
		}
	}
	return true, nil
}

// pop leaves the top chain; leaving the endpoint chain records its
// (allowing) decision.
func (w *walker) pop(stack []frame) []frame {
	stack = stack[:len(stack)-1]
	if w.ep != "" && len(stack) == w.epDepth {
		w.leaveEndpoint(true, "", 0)
	}
	return stack
}

func (w *walker) lookup(v policy.Verdict) (policy.Verdict, bool, error) {
	m := w.rs.Map(v.Map)
	if m == nil {
		return policy.Verdict{}, false, fmt.Errorf("missing map %q", v.Map)
	}
	var key policy.Element
	switch v.Key {
	case policy.KeyIIfName:
		key = policy.Element{IfName: w.p.iif}
	case policy.KeyOIfName:
		key = policy.Element{IfName: w.p.oif}
	case policy.KeyProtoDport:
		if !hasPorts(w.p.proto) {
			return policy.Verdict{}, false, nil
		}
		key = policy.Element{Proto: w.p.proto, Port: w.p.dport}
	default:
		return policy.Verdict{}, false, fmt.Errorf("map %s: unknown key %d", v.Map, v.Key)
	}
	i, ok := slices.BinarySearchFunc(m.Elements, key, func(e policy.MapElement, k policy.Element) int { return e.Key.Compare(k) })
	if !ok {
		return policy.Verdict{}, false, nil
	}
	return m.Elements[i].Verdict, true, nil
}

func hasPorts(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 || proto == 136 }

func (w *walker) matches(ms []policy.Match) (bool, error) {
	for _, m := range ms {
		ok, err := w.match(m)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (w *walker) addr(d policy.Direction) netip.Addr {
	if d == policy.Src {
		return w.p.src
	}
	return w.p.dst
}

func (w *walker) port(d policy.Direction) uint16 {
	if d == policy.Src {
		return w.p.sport
	}
	return w.p.dport
}

// match evaluates one match. What the packet lacks (a port of an ICMP
// packet, the other family's address) does not match, as in the kernel
// where the compiler guards every such read.
func (w *walker) match(m policy.Match) (bool, error) {
	p := w.p
	switch m := m.(type) {
	case policy.IfName:
		name := p.iif
		if m.Out {
			name = p.oif
		}
		ok := name == m.Name || m.Prefix && strings.HasPrefix(name, m.Name)
		return ok != m.Neg, nil
	case policy.NFProto:
		return p.family == m.Family, nil
	case policy.L4Proto:
		return (p.proto == m.Proto) != m.Neg, nil
	case policy.CtState:
		return policy.CtNew&m.State != 0, nil
	case policy.Mark:
		return (w.mark&m.Mask == m.Value) != m.Neg, nil
	case policy.FibDaddrLocal:
		return p.daddrLocal, nil
	case policy.AddrPrefix:
		if familyOf(m.Prefix.Addr()) != p.family {
			return false, nil
		}
		return m.Prefix.Contains(w.addr(m.Dir)) != m.Neg, nil
	case policy.AddrSet:
		if m.Family != p.family {
			return false, nil
		}
		s := w.rs.Set(m.Set)
		if s == nil {
			return false, fmt.Errorf("missing set %q", m.Set)
		}
		return inPrefixes(s.Elements, w.addr(m.Dir)) != m.Neg, nil
	case policy.Port:
		if !hasPorts(p.proto) {
			return false, nil
		}
		v := w.port(m.Dir)
		return (v >= m.Min && v <= m.Max) != m.Neg, nil
	case policy.PortSet:
		if !hasPorts(p.proto) {
			return false, nil
		}
		s := w.rs.Set(m.Set)
		if s == nil {
			return false, fmt.Errorf("missing set %q", m.Set)
		}
		v := w.port(m.Dir)
		in := slices.ContainsFunc(s.Elements, func(e policy.Element) bool { return v >= e.Port && v <= e.PortEnd })
		return in != m.Neg, nil
	case policy.AddrPortSet:
		if m.Family != p.family || !hasPorts(p.proto) {
			return false, nil
		}
		s := w.rs.Set(m.Set)
		if s == nil {
			return false, fmt.Errorf("missing set %q", m.Set)
		}
		key := policy.Element{Addr: w.addr(m.Dir), Proto: p.proto, Port: w.port(m.Dir)}
		_, in := slices.BinarySearchFunc(s.Elements, key, policy.Element.Compare)
		return in != m.Neg, nil
	case policy.IfAddrSet:
		if m.Family != p.family {
			return false, nil
		}
		s := w.rs.Set(m.Set)
		if s == nil {
			return false, fmt.Errorf("missing set %q", m.Set)
		}
		key := policy.Element{IfName: p.iif, Addr: p.src}
		_, in := slices.BinarySearchFunc(s.Elements, key, policy.Element.Compare)
		return in != m.Neg, nil
	case policy.ICMP:
		if !w.icmp(m.Family) {
			return false, nil
		}
		ok := p.icmpType == m.Type && (!m.HasCode || p.icmpCode == m.Code)
		return ok != m.Neg, nil
	case policy.ICMPTypes:
		if !w.icmp(m.Family) {
			return false, nil
		}
		return p.icmpType >= m.Min && p.icmpType <= m.Max, nil
	}
	return false, fmt.Errorf("match %T is not known to the flow replay", m)
}

func (w *walker) icmp(family int) bool {
	want := uint8(1)
	if family == 6 {
		want = 58
	}
	return w.p.family == family && w.p.proto == want
}

// inPrefixes reports whether a is in a sorted list of non-overlapping
// prefixes (an interval set's elements).
func inPrefixes(elems []policy.Element, a netip.Addr) bool {
	i, _ := slices.BinarySearchFunc(elems, a, func(e policy.Element, a netip.Addr) int {
		if e.Prefix.Addr().Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	// elems[i-1] is the last prefix starting at or before a.
	return i > 0 && elems[i-1].Prefix.Contains(a)
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
