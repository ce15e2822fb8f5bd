package policytest

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// Packet is what the packet-walk oracle sees of a packet at one hook: the
// header fields and metadata Tabby's rules read.
type Packet struct {
	Hook               policy.HookPoint // prerouting (raw), forward, input or output
	Family             int              // 4 or 6
	IIf, OIf           string
	Src, Dst           netip.Addr
	Proto              uint8
	SPort, DPort       uint16
	ICMPType, ICMPCode uint8
	Ct                 uint32 // conntrack state bits; 0 means policy.CtNew
	Mark               uint32
	DaddrLocal         bool // the destination is an address of this host
}

func (p Packet) String() string {
	s := fmt.Sprintf("%s ipv%d %s→%s proto %d", p.Hook, p.Family, p.Src, p.Dst, p.Proto)
	switch p.Proto {
	case 6, 17, 132, 136:
		s += fmt.Sprintf(" %d→%d", p.SPort, p.DPort)
	case 1, 58:
		s += fmt.Sprintf(" type %d code %d", p.ICMPType, p.ICMPCode)
	}
	if p.IIf != "" {
		s += " iif " + p.IIf
	}
	if p.OIf != "" {
		s += " oif " + p.OIf
	}
	return s
}

// Outcome is what a walk decided.
type Outcome struct {
	Accept bool
	Mark   uint32   // the mark when the walk ended
	Trace  []string // chain:rule index of every rule whose matches held
	// Evaluated counts the rules whose matches were tested: the cost of
	// the packet's walk.
	Evaluated int
}

// maxDepth is the kernel's limit on nested jumps (NFT_JUMP_STACK_SIZE).
const maxDepth = 16

// Walk evaluates a packet against the filter-type base chains of its hook
// in a compiled ruleset, in priority order, as netfilter would: without
// root, in pure Go. It is the oracle that compares two compilations of one
// state. It returns an error when the ruleset reads what the packet does
// not have (an IPv4 address of an IPv6 packet, a port of an ICMP packet),
// when a chain, set or map is missing, or when jumps nest deeper than the
// kernel allows: a well-formed ruleset never does.
func Walk(rs *policy.Ruleset, p Packet) (Outcome, error) {
	if p.Ct == 0 {
		p.Ct = policy.CtNew
	}
	var bases []*policy.Chain
	for _, c := range rs.Chains {
		if c.Hook != nil && c.Hook.Type == policy.TypeFilter && c.Hook.Hook == p.Hook {
			bases = append(bases, c)
		}
	}
	slices.SortStableFunc(bases, func(a, b *policy.Chain) int { return cmp.Compare(a.Hook.Priority, b.Hook.Priority) })
	w := &walker{rs: rs, p: p, mark: p.Mark}
	for _, b := range bases {
		accept, err := w.base(b)
		if err != nil {
			return Outcome{}, fmt.Errorf("%s: %w", p, err)
		}
		if !accept {
			return Outcome{Accept: false, Mark: w.mark, Trace: w.trace, Evaluated: w.evaluated}, nil
		}
	}
	return Outcome{Accept: true, Mark: w.mark, Trace: w.trace, Evaluated: w.evaluated}, nil
}

type walker struct {
	rs        *policy.Ruleset
	p         Packet
	mark      uint32
	trace     []string
	evaluated int
}

// frame is a position in a chain.
type frame struct {
	chain *policy.Chain
	next  int
}

// base walks one base chain; the chain's policy is accept.
func (w *walker) base(b *policy.Chain) (bool, error) {
	stack := []frame{{chain: b}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next >= len(top.chain.Rules) {
			stack = stack[:len(stack)-1] // end of chain: return
			continue
		}
		i := top.next
		r := top.chain.Rules[i]
		top.next++
		w.evaluated++
		ok, err := w.matches(r.Matches)
		if err != nil {
			return false, fmt.Errorf("chain %s rule %d (%s): %w", top.chain.Name, i, r, err)
		}
		if !ok {
			continue
		}
		w.trace = append(w.trace, fmt.Sprintf("%s:%d", top.chain.Name, i))
		for _, s := range r.Stmts {
			if m, ok := s.(policy.SetMark); ok {
				w.mark = (w.mark & m.And) ^ m.Xor
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
			return true, nil
		case policy.Drop:
			return false, nil
		case policy.Return:
			stack = stack[:len(stack)-1]
		case policy.Jump, policy.Goto:
			c := w.rs.Chain(v.Chain)
			if c == nil {
				return false, fmt.Errorf("chain %s rule %d: %s to missing chain %q", top.chain.Name, i, verdictName(v.Kind), v.Chain)
			}
			if v.Kind == policy.Goto {
				stack = stack[:len(stack)-1]
			}
			if len(stack) >= maxDepth {
				return false, fmt.Errorf("chain %s rule %d: jumps nest deeper than %d", top.chain.Name, i, maxDepth)
			}
			stack = append(stack, frame{chain: c})
		default:
			return false, fmt.Errorf("chain %s rule %d: verdict %d", top.chain.Name, i, v.Kind)
		}
	}
	return true, nil
}

func verdictName(k policy.VerdictKind) string {
	if k == policy.Goto {
		return "goto"
	}
	return "jump"
}

// lookup finds a verdict map element for the packet.
func (w *walker) lookup(v policy.Verdict) (policy.Verdict, bool, error) {
	m := w.rs.Map(v.Map)
	if m == nil {
		return policy.Verdict{}, false, fmt.Errorf("missing map %q", v.Map)
	}
	var key policy.Element
	switch v.Key {
	case policy.KeyIIfName:
		key = policy.Element{IfName: w.p.IIf}
	case policy.KeyOIfName:
		key = policy.Element{IfName: w.p.OIf}
	case policy.KeyProtoDport:
		if !hasPorts(w.p.Proto) {
			return policy.Verdict{}, false, fmt.Errorf("map %s: reads the port of a packet of protocol %d", v.Map, w.p.Proto)
		}
		key = policy.Element{Proto: w.p.Proto, Port: w.p.DPort}
	default:
		return policy.Verdict{}, false, fmt.Errorf("map %s: unknown key %d", v.Map, v.Key)
	}
	for _, e := range m.Elements {
		if e.Key == key {
			return e.Verdict, true, nil
		}
	}
	return policy.Verdict{}, false, nil
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
		return w.p.Src
	}
	return w.p.Dst
}

func (w *walker) port(d policy.Direction) uint16 {
	if d == policy.Src {
		return w.p.SPort
	}
	return w.p.DPort
}

// family checks that a match reading family f's header meets a packet of
// that family.
func (w *walker) family(f int, what string) error {
	if f != w.p.Family {
		return fmt.Errorf("%s reads the IPv%d header of an IPv%d packet", what, f, w.p.Family)
	}
	return nil
}

func (w *walker) match(m policy.Match) (bool, error) {
	p := w.p
	switch m := m.(type) {
	case policy.IfName:
		name := p.IIf
		if m.Out {
			name = p.OIf
		}
		ok := name == m.Name || m.Prefix && strings.HasPrefix(name, m.Name)
		return ok != m.Neg, nil
	case policy.NFProto:
		return p.Family == m.Family, nil
	case policy.L4Proto:
		return (p.Proto == m.Proto) != m.Neg, nil
	case policy.CtState:
		return p.Ct&m.State != 0, nil
	case policy.Mark:
		return (w.mark&m.Mask == m.Value) != m.Neg, nil
	case policy.FibDaddrLocal:
		return p.DaddrLocal, nil
	case policy.AddrPrefix:
		if err := w.family(familyOf(m.Prefix.Addr()), "address match"); err != nil {
			return false, err
		}
		return m.Prefix.Contains(w.addr(m.Dir)) != m.Neg, nil
	case policy.AddrSet:
		if err := w.family(m.Family, "set @"+m.Set); err != nil {
			return false, err
		}
		s, err := w.set(m.Set)
		if err != nil {
			return false, err
		}
		a := w.addr(m.Dir)
		in := slices.ContainsFunc(s.Elements, func(e policy.Element) bool { return e.Prefix.Contains(a) })
		return in != m.Neg, nil
	case policy.Port:
		if !hasPorts(p.Proto) {
			return false, fmt.Errorf("port match on a packet of protocol %d", p.Proto)
		}
		v := w.port(m.Dir)
		return (v >= m.Min && v <= m.Max) != m.Neg, nil
	case policy.PortSet:
		if !hasPorts(p.Proto) {
			return false, fmt.Errorf("port set @%s on a packet of protocol %d", m.Set, p.Proto)
		}
		s, err := w.set(m.Set)
		if err != nil {
			return false, err
		}
		v := w.port(m.Dir)
		in := slices.ContainsFunc(s.Elements, func(e policy.Element) bool { return v >= e.Port && v <= e.PortEnd })
		return in != m.Neg, nil
	case policy.AddrPortSet:
		if err := w.family(m.Family, "set @"+m.Set); err != nil {
			return false, err
		}
		if !hasPorts(p.Proto) {
			return false, fmt.Errorf("named-port set @%s on a packet of protocol %d", m.Set, p.Proto)
		}
		s, err := w.set(m.Set)
		if err != nil {
			return false, err
		}
		key := policy.Element{Addr: w.addr(m.Dir), Proto: p.Proto, Port: w.port(m.Dir)}
		return slices.Contains(s.Elements, key) != m.Neg, nil
	case policy.IfAddrSet:
		if err := w.family(m.Family, "set @"+m.Set); err != nil {
			return false, err
		}
		s, err := w.set(m.Set)
		if err != nil {
			return false, err
		}
		key := policy.Element{IfName: p.IIf, Addr: p.Src}
		return slices.Contains(s.Elements, key) != m.Neg, nil
	case policy.ICMP:
		if err := w.icmp(m.Family); err != nil {
			return false, err
		}
		ok := p.ICMPType == m.Type && (!m.HasCode || p.ICMPCode == m.Code)
		return ok != m.Neg, nil
	case policy.ICMPTypes:
		if err := w.icmp(m.Family); err != nil {
			return false, err
		}
		return p.ICMPType >= m.Min && p.ICMPType <= m.Max, nil
	}
	return false, fmt.Errorf("match %T is not known to the oracle", m)
}

func (w *walker) icmp(family int) error {
	want := uint8(1)
	if family == 6 {
		want = 58
	}
	if err := w.family(family, "ICMP match"); err != nil {
		return err
	}
	if w.p.Proto != want {
		return fmt.Errorf("ICMPv%d match on a packet of protocol %d", family, w.p.Proto)
	}
	return nil
}

func (w *walker) set(name string) (*policy.Set, error) {
	s := w.rs.Set(name)
	if s == nil {
		return nil, fmt.Errorf("missing set %q", name)
	}
	return s, nil
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
