package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Render prints the ruleset as deterministic nft-like text: sets, then
// maps, then chains, each sorted by name, one element per line. It is what
// the golden files hold; it reads like `nft list table inet tabby` but is
// not meant to be fed to nft.
func (r *Ruleset) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	for _, s := range r.Sets {
		renderSet(&b, s)
	}
	for _, m := range r.Maps {
		renderMap(&b, m)
	}
	for i, c := range r.Chains {
		if i > 0 || len(r.Sets)+len(r.Maps) > 0 {
			b.WriteString("\n")
		}
		renderChain(&b, c)
	}
	b.WriteString("}\n")
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "# warning: %s\n", w)
	}
	for _, q := range r.Quarantined {
		fmt.Fprintf(&b, "# quarantined: %s: %s\n", q.ID(), q.Reason)
	}
	return b.String()
}

// Render renders one set as in Ruleset.Render.
func (s *Set) Render() string {
	var b strings.Builder
	renderSet(&b, s)
	return b.String()
}

// String renders one chain.
func (c *Chain) String() string {
	var b strings.Builder
	renderChain(&b, c)
	return b.String()
}

func renderSet(b *strings.Builder, s *Set) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n", s.Name, setTypeName(s.Type))
	if s.Type.Interval() {
		b.WriteString("\t\tflags interval\n")
	}
	if s.Type == SetLearned4 || s.Type == SetLearned6 {
		if s.MaxElements > 0 {
			fmt.Fprintf(b, "\t\tsize %d\n", s.MaxElements)
		}
		b.WriteString("\t\tflags timeout\n")
	}
	if s.Comment != "" {
		fmt.Fprintf(b, "\t\tcomment %s\n", strconv.Quote(s.Comment))
	}
	if len(s.Elements) > 0 {
		b.WriteString("\t\telements = {\n")
		for _, e := range s.Elements {
			fmt.Fprintf(b, "\t\t\t%s,\n", renderElement(s.Type, e))
		}
		b.WriteString("\t\t}\n")
	}
	b.WriteString("\t}\n")
}

func renderMap(b *strings.Builder, m *Map) {
	key := "ifname"
	if m.Type == MapProtoPort {
		key = "inet_proto . inet_service"
	}
	fmt.Fprintf(b, "\tmap %s {\n\t\ttype %s : verdict\n", m.Name, key)
	if m.Comment != "" {
		fmt.Fprintf(b, "\t\tcomment %s\n", strconv.Quote(m.Comment))
	}
	if len(m.Elements) > 0 {
		b.WriteString("\t\telements = {\n")
		for _, e := range m.Elements {
			var k string
			if m.Type == MapIfName {
				k = strconv.Quote(e.Key.IfName)
			} else {
				k = protoName(e.Key.Proto) + " . " + strconv.Itoa(int(e.Key.Port))
			}
			fmt.Fprintf(b, "\t\t\t%s : %s,\n", k, renderVerdict(e.Verdict))
		}
		b.WriteString("\t\t}\n")
	}
	b.WriteString("\t}\n")
}

func renderChain(b *strings.Builder, c *Chain) {
	fmt.Fprintf(b, "\tchain %s {\n", c.Name)
	if h := c.Hook; h != nil {
		fmt.Fprintf(b, "\t\ttype %s hook %s priority %s; policy accept;\n", h.Type, h.Hook, priorityName(h.Priority))
	}
	for _, r := range c.Rules {
		b.WriteString("\t\t")
		b.WriteString(r.String())
		b.WriteString("\n")
	}
	b.WriteString("\t}\n")
}

// String renders a rule on one line.
func (r Rule) String() string {
	var parts []string
	for _, m := range r.Matches {
		parts = append(parts, renderMatch(m))
	}
	for _, s := range r.Stmts {
		parts = append(parts, renderStmt(s))
	}
	if v := renderVerdict(r.Verdict); v != "" {
		parts = append(parts, v)
	}
	return strings.Join(parts, " ")
}

func setTypeName(t SetType) string {
	switch t {
	case SetAddr4:
		return "ipv4_addr"
	case SetAddr6:
		return "ipv6_addr"
	case SetPort:
		return "inet_service"
	case SetIfAddr4:
		return "ifname . ipv4_addr"
	case SetIfAddr6:
		return "ifname . ipv6_addr"
	case SetAddrPort4:
		return "ipv4_addr . inet_proto . inet_service"
	case SetAddrPort6:
		return "ipv6_addr . inet_proto . inet_service"
	case SetLearned4:
		return "ipv4_addr"
	case SetLearned6:
		return "ipv6_addr"
	}
	return fmt.Sprintf("unknown(%d)", t)
}

func renderElement(t SetType, e Element) string {
	switch t {
	case SetAddr4, SetAddr6:
		return renderPrefix(e.Prefix)
	case SetLearned4, SetLearned6:
		return e.Addr.String()
	case SetPort:
		return renderPortRange(e.Port, e.PortEnd)
	case SetIfAddr4, SetIfAddr6:
		return strconv.Quote(e.IfName) + " . " + e.Addr.String()
	case SetAddrPort4, SetAddrPort6:
		return e.Addr.String() + " . " + protoName(e.Proto) + " . " + strconv.Itoa(int(e.Port))
	}
	return fmt.Sprintf("%+v", e)
}

func renderPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func renderPortRange(lo, hi uint16) string {
	if lo == hi {
		return strconv.Itoa(int(lo))
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

func priorityName(p int32) string {
	switch p {
	case PriorityRaw:
		return "raw"
	case PriorityDstNAT:
		return "dstnat"
	case PriorityFilter:
		return "filter"
	case PrioritySrcNAT:
		return "srcnat"
	}
	return strconv.Itoa(int(p))
}

var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func neq(neg bool) string {
	if neg {
		return "!= "
	}
	return ""
}

func dirName(d Direction) string {
	if d == Src {
		return "s"
	}
	return "d"
}

func ipName(family int) string {
	if family == 6 {
		return "ip6"
	}
	return "ip"
}

func icmpName(family int) string {
	if family == 6 {
		return "icmpv6"
	}
	return "icmp"
}

func renderMatch(m Match) string {
	switch m := m.(type) {
	case IfName:
		name := m.Name
		if m.Prefix {
			name += "*"
		}
		kw := "iifname"
		if m.Out {
			kw = "oifname"
		}
		return fmt.Sprintf("%s %s%s", kw, neq(m.Neg), strconv.Quote(name))
	case NFProto:
		return "meta nfproto ipv" + strconv.Itoa(m.Family)
	case L4Proto:
		return "meta l4proto " + neq(m.Neg) + protoName(m.Proto)
	case CtState:
		return "ct state " + ctStateName(m.State)
	case AddrPrefix:
		fam := 4
		if m.Prefix.Addr().Is6() {
			fam = 6
		}
		return fmt.Sprintf("%s %saddr %s%s", ipName(fam), dirName(m.Dir), neq(m.Neg), renderPrefix(m.Prefix))
	case AddrSet:
		return fmt.Sprintf("%s %saddr %s@%s", ipName(m.Family), dirName(m.Dir), neq(m.Neg), m.Set)
	case Port:
		return fmt.Sprintf("th %sport %s%s", dirName(m.Dir), neq(m.Neg), renderPortRange(m.Min, m.Max))
	case PortSet:
		return fmt.Sprintf("th %sport %s@%s", dirName(m.Dir), neq(m.Neg), m.Set)
	case AddrPortSet:
		d := dirName(m.Dir)
		return fmt.Sprintf("%s %saddr . meta l4proto . th %sport %s@%s", ipName(m.Family), d, d, neq(m.Neg), m.Set)
	case IfAddrSet:
		return fmt.Sprintf("iifname . %s saddr %s@%s", ipName(m.Family), neq(m.Neg), m.Set)
	case ICMP:
		n := icmpName(m.Family)
		if !m.HasCode {
			return fmt.Sprintf("%s type %s%d", n, neq(m.Neg), m.Type)
		}
		if m.Neg {
			return fmt.Sprintf("%s type . %s code != %d . %d", n, n, m.Type, m.Code)
		}
		return fmt.Sprintf("%s type %d %s code %d", n, m.Type, n, m.Code)
	case ICMPTypes:
		return fmt.Sprintf("%s type %d-%d", icmpName(m.Family), m.Min, m.Max)
	case Mark:
		op := "=="
		if m.Neg {
			op = "!="
		}
		return fmt.Sprintf("meta mark & 0x%08x %s 0x%08x", m.Mask, op, m.Value)
	case FibDaddrLocal:
		return "fib daddr type local"
	case Limit:
		return fmt.Sprintf("limit rate %d/second burst %d packets", m.Rate, m.Burst)
	}
	return fmt.Sprintf("<%T>", m)
}

func ctStateName(s uint32) string {
	var names []string
	for _, st := range []struct {
		bit  uint32
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}} {
		if s&st.bit != 0 {
			names = append(names, st.name)
		}
	}
	return strings.Join(names, ",")
}

func renderStmt(s Stmt) string {
	switch s := s.(type) {
	case Log:
		return "log prefix " + strconv.Quote(s.Prefix)
	case LogGroup:
		return fmt.Sprintf("log prefix %s group %d", strconv.Quote(s.Prefix), s.Group)
	case SetMark:
		switch {
		case s.And == ^s.Xor:
			return fmt.Sprintf("meta mark set meta mark | 0x%08x", s.Xor)
		case s.Xor == 0:
			return fmt.Sprintf("meta mark set meta mark & 0x%08x", s.And)
		default:
			return fmt.Sprintf("meta mark set meta mark & 0x%08x ^ 0x%08x", s.And, s.Xor)
		}
	case Masquerade:
		return "masquerade"
	case SNAT:
		return fmt.Sprintf("snat %s to %s", ipName(addrFamily(s.Addr)), s.Addr)
	case DNAT:
		return fmt.Sprintf("dnat %s to %s", ipName(addrFamily(s.Addr)), netip.AddrPortFrom(s.Addr, s.Port))
	}
	return fmt.Sprintf("<%T>", s)
}

func renderVerdict(v Verdict) string {
	switch v.Kind {
	case Continue:
		return ""
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Return:
		return "return"
	case Jump:
		return "jump " + v.Chain
	case Goto:
		return "goto " + v.Chain
	case VMap:
		var key string
		switch v.Key {
		case KeyIIfName:
			key = "iifname"
		case KeyOIfName:
			key = "oifname"
		case KeyProtoDport:
			key = "meta l4proto . th dport"
		}
		return key + " vmap @" + v.Map
	}
	return fmt.Sprintf("<verdict %d>", v.Kind)
}

func addrFamily(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
