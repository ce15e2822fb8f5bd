package nft

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// plan is one transaction: what to create, change and delete.
type plan struct {
	replace     bool // delete the table first and build everything
	tableExists bool
	newSets     []string // sets and maps to create
	delElems    []setChange
	addElems    []setChange
	newChains   []string // to create and fill
	rewrite     []string // to flush and fill again
	delChains   []string
	delSets     []string
	gone        []netip.Addr // local workload addresses that disappeared

	messages, bytes int // size estimate, for the socket buffers
}

type setChange struct {
	name   string
	tokens []token
}

func (p *plan) empty() bool {
	return !p.replace && len(p.newSets) == 0 && len(p.delElems) == 0 && len(p.addElems) == 0 &&
		len(p.newChains) == 0 && len(p.rewrite) == 0 && len(p.delChains) == 0 && len(p.delSets) == 0 &&
		p.tableExists
}

func (p *plan) change() Change {
	ch := Change{Replaced: p.replace, SetsAdded: len(p.newSets), SetsDeleted: len(p.delSets),
		ChainsAdded: len(p.newChains), ChainsRewritten: len(p.rewrite), ChainsDeleted: len(p.delChains)}
	for _, c := range p.addElems {
		ch.ElementsAdded += len(c.tokens)
	}
	for _, c := range p.delElems {
		ch.ElementsDeleted += len(c.tokens)
	}
	return ch
}

// wantSets indexes the sets and maps of a ruleset by name.
func wantTokens(rs *policy.Ruleset, name string) []token {
	if s := rs.Set(name); s != nil {
		return setTokens(s)
	}
	if m := rs.Map(name); m != nil {
		return mapTokens(m)
	}
	return nil
}

func allSetNames(rs *policy.Ruleset) []string {
	names := make([]string, 0, len(rs.Sets)+len(rs.Maps))
	for _, s := range rs.Sets {
		names = append(names, s.Name)
	}
	for _, m := range rs.Maps {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// fullPlan builds everything from nothing.
func fullPlan(rs *policy.Ruleset, tableExists bool) *plan {
	p := &plan{replace: true, tableExists: tableExists}
	for _, name := range allSetNames(rs) {
		p.newSets = append(p.newSets, name)
		if toks := wantTokens(rs, name); len(toks) > 0 {
			p.addElems = append(p.addElems, setChange{name, toks})
		}
	}
	for _, c := range rs.Chains {
		p.newChains = append(p.newChains, c.Name)
	}
	return p
}

// planFromModel diffs against the ruleset the kernel is known to hold.
func (d *Driver) planFromModel(cur, want *policy.Ruleset) (*plan, error) {
	p := &plan{tableExists: true}
	// The incremental engine shares every unchanged set, map and chain
	// with the ruleset before: those compare by pointer, so an update of
	// a few set elements costs a walk of the names, not of the table.
	for _, s := range want.Sets {
		old := cur.Set(s.Name)
		switch {
		case old == s:
		case old == nil:
			p.newSets = append(p.newSets, s.Name)
			if toks := setTokens(s); len(toks) > 0 {
				p.addElems = append(p.addElems, setChange{s.Name, toks})
			}
		case old.Type != s.Type:
			return fullPlan(want, true), nil
		case !slices.Equal(old.Elements, s.Elements):
			add, del := diffElements(s.Type, old.Elements, s.Elements)
			if len(del) > 0 {
				p.delElems = append(p.delElems, setChange{s.Name, del})
			}
			if len(add) > 0 {
				p.addElems = append(p.addElems, setChange{s.Name, add})
			}
		}
	}
	for _, m := range want.Maps {
		old := cur.Map(m.Name)
		switch {
		case old == m:
		case old == nil:
			p.newSets = append(p.newSets, m.Name)
			if toks := mapTokens(m); len(toks) > 0 {
				p.addElems = append(p.addElems, setChange{m.Name, toks})
			}
		case old.Type != m.Type:
			return fullPlan(want, true), nil
		case !slices.Equal(old.Elements, m.Elements):
			add, del := diffTokens(tokenSet(mapTokens(old)), mapTokens(m))
			if len(del) > 0 {
				p.delElems = append(p.delElems, setChange{m.Name, del})
			}
			if len(add) > 0 {
				p.addElems = append(p.addElems, setChange{m.Name, add})
			}
		}
	}
	for _, s := range cur.Sets {
		if want.Set(s.Name) == nil {
			p.delSets = append(p.delSets, s.Name)
		}
	}
	for _, m := range cur.Maps {
		if want.Map(m.Name) == nil {
			p.delSets = append(p.delSets, m.Name)
		}
	}
	for _, c := range want.Chains {
		old := cur.Chain(c.Name)
		switch {
		case old == c:
		case old == nil:
			p.newChains = append(p.newChains, c.Name)
		case !hookEqual(old.Hook, c.Hook):
			return fullPlan(want, true), nil
		case !policy.RulesEqual(old.Rules, c.Rules):
			p.rewrite = append(p.rewrite, c.Name)
		}
	}
	for _, c := range cur.Chains {
		if want.Chain(c.Name) == nil {
			p.delChains = append(p.delChains, c.Name)
		}
	}
	p.gone = goneAddrs(workloadAddrs(cur), workloadAddrs(want))
	return p, nil
}

// planFromKernel diffs against the table read from the kernel.
func (d *Driver) planFromKernel(st *kernelState, want *policy.Ruleset, rebuild bool) (*plan, error) {
	gone := goneAddrs(kernelWorkloadAddrs(st), workloadAddrs(want))
	if rebuild || !st.exists {
		p := fullPlan(want, st.exists)
		p.gone = gone
		return p, nil
	}
	p := &plan{tableExists: true, gone: gone}
	for _, name := range allSetNames(want) {
		ks := st.sets[name]
		var spec setSpec
		if s := want.Set(name); s != nil {
			spec = specOfSet(s)
		} else {
			spec = specOfMap()
		}
		toks := wantTokens(want, name)
		switch {
		case ks == nil:
			p.newSets = append(p.newSets, name)
			if len(toks) > 0 {
				p.addElems = append(p.addElems, setChange{name, toks})
			}
		case ks.odd || ks.spec != spec:
			d.log.Info("nftables set differs in type; rebuilding the table", "set", name)
			p := fullPlan(want, true)
			p.gone = gone
			return p, nil
		case spec.timeout:
			// Learned elements stay as the forwarder wrote them.
		default:
			add, del := diffTokens(ks.tokens, toks)
			if len(del) > 0 {
				p.delElems = append(p.delElems, setChange{name, del})
			}
			if len(add) > 0 {
				p.addElems = append(p.addElems, setChange{name, add})
			}
		}
	}
	for _, name := range sortedKeys(st.sets) {
		if want.Set(name) == nil && want.Map(name) == nil {
			p.delSets = append(p.delSets, name)
		}
	}
	for _, c := range want.Chains {
		kc := st.chains[c.Name]
		if kc == nil {
			p.newChains = append(p.newChains, c.Name)
			continue
		}
		if kc.odd || !hookEqual(kc.hook, c.Hook) {
			d.log.Info("nftables chain differs in hook; rebuilding the table", "chain", c.Name)
			p := fullPlan(want, true)
			p.gone = gone
			return p, nil
		}
		m, err := d.chainMemo(c)
		if err != nil {
			return nil, err
		}
		fps, err := m.fingerprints()
		if err != nil {
			return nil, err
		}
		if !slices.Equal(fps, kc.rules) {
			p.rewrite = append(p.rewrite, c.Name)
		}
	}
	for _, name := range sortedKeys(st.chains) {
		if want.Chain(name) == nil {
			p.delChains = append(p.delChains, name)
		}
	}
	return p, nil
}

func hookEqual(a, b *policy.Hook) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func tokenSet(ts []token) map[token]struct{} {
	m := make(map[token]struct{}, len(ts))
	for _, t := range ts {
		m[t] = struct{}{}
	}
	return m
}

// diffTokens returns the tokens of want missing from have, and those of
// have missing from want (sorted, for deterministic batches).
func diffTokens(have map[token]struct{}, want []token) (add, del []token) {
	w := tokenSet(want)
	for _, t := range want {
		if _, ok := have[t]; !ok {
			add = append(add, t)
		}
	}
	for t := range have {
		if _, ok := w[t]; !ok {
			del = append(del, t)
		}
	}
	slices.SortFunc(del, compareTokens)
	return add, del
}

func compareTokens(a, b token) int {
	if a.key != b.key {
		if a.key < b.key {
			return -1
		}
		return 1
	}
	if a.end != b.end {
		if !a.end {
			return -1
		}
		return 1
	}
	return 0
}

// diffElements compares two sorted element lists and returns the kernel
// elements to add and delete. Interval boundaries shared by a removed and
// an added range cancel out.
func diffElements(t policy.SetType, old, new []policy.Element) (add, del []token) {
	var added, removed []policy.Element
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new):
			removed = append(removed, old[i])
			i++
		case i == len(old):
			added = append(added, new[j])
			j++
		default:
			switch c := old[i].Compare(new[j]); {
			case c == 0:
				i++
				j++
			case c < 0:
				removed = append(removed, old[i])
				i++
			default:
				added = append(added, new[j])
				j++
			}
		}
	}
	addT := setTokens(&policy.Set{Type: t, Elements: added})
	delT := setTokens(&policy.Set{Type: t, Elements: removed})
	if len(addT) == 0 || len(delT) == 0 {
		return addT, delT
	}
	return diffTokens(tokenSet(delT), addT)
}

// workloadAddrs are the addresses of the local workloads (from the
// anti-spoofing sets).
func workloadAddrs(rs *policy.Ruleset) map[netip.Addr]struct{} {
	out := map[netip.Addr]struct{}{}
	if rs == nil {
		return out
	}
	for _, name := range []string{policy.SetWorkloadSrc4, policy.SetWorkloadSrc6} {
		if s := rs.Set(name); s != nil {
			for _, e := range s.Elements {
				out[e.Addr] = struct{}{}
			}
		}
	}
	return out
}

func kernelWorkloadAddrs(st *kernelState) map[netip.Addr]struct{} {
	out := map[netip.Addr]struct{}{}
	for _, name := range []string{policy.SetWorkloadSrc4, policy.SetWorkloadSrc6} {
		s := st.sets[name]
		if s == nil {
			continue
		}
		for t := range s.tokens {
			if len(t.key) <= ifNameLen {
				continue
			}
			if a, ok := netip.AddrFromSlice([]byte(t.key[ifNameLen:])); ok {
				out[a] = struct{}{}
			}
		}
	}
	return out
}

func goneAddrs(old, new map[netip.Addr]struct{}) []netip.Addr {
	var out []netip.Addr
	for a := range old {
		if _, ok := new[a]; !ok {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// maxElemBytes bounds the elements of one netlink message: the element
// list is one attribute, whose length field has 16 bits.
const maxElemBytes = 48 << 10

func chunkTokens(ts []token) [][]token {
	var out [][]token
	start, size := 0, 0
	for i, t := range ts {
		n := 2*len(t.key) + len(t.chain) + 48
		if size+n > maxElemBytes && i > start {
			out = append(out, ts[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(ts) {
		out = append(out, ts[start:])
	}
	return out
}

func elements(ts []token) []nftables.SetElement {
	out := make([]nftables.SetElement, len(ts))
	for i, t := range ts {
		out[i] = nftables.SetElement{Key: []byte(t.key), IntervalEnd: t.end}
		if t.verdict {
			out[i].VerdictData = &expr.Verdict{Kind: expr.VerdictKind(t.vcode), Chain: t.chain}
		}
	}
	return out
}

// nftSet describes a set or map of the ruleset for google/nftables.
func nftSet(rs *policy.Ruleset, name string) (*nftables.Set, error) {
	t := tableRef()
	if s := rs.Set(name); s != nil {
		ns := &nftables.Set{Table: t, Name: name, KeyType: setKeyType(s.Type), Interval: s.Type.Interval(), Comment: s.Comment}
		if learned(s.Type) {
			ns.HasTimeout, ns.Size = true, s.MaxElements
		}
		return ns, nil
	}
	if m := rs.Map(name); m != nil {
		return &nftables.Set{Table: t, Name: name, KeyType: mapKeyType(m.Type), KeyByteOrder: binaryutil.NativeEndian, IsMap: true, DataType: nftables.TypeVerdict, Comment: m.Comment}, nil
	}
	return nil, fmt.Errorf("no set or map %s in the ruleset", name)
}

// exec sends the plan as one transaction.
func (d *Driver) exec(p *plan, rs *policy.Ruleset) error {
	// Expressions of the chains to write, and the size of the batch.
	fill := slices.Concat(p.newChains, p.rewrite)
	exprs := make(map[string][][]expr.Any, len(fill))
	p.messages = 8 + len(p.newSets) + 2*len(p.delChains) + len(p.delSets) + len(p.rewrite) + len(p.newChains)
	for _, name := range fill {
		c := rs.Chain(name)
		m, err := d.chainMemo(c)
		if err != nil {
			return err
		}
		exprs[name] = m.exprs
		p.messages += len(m.exprs)
		for _, e := range m.exprs {
			p.bytes += 64 + 48*len(e)
		}
	}
	for _, cs := range slices.Concat(p.addElems, p.delElems) {
		p.messages += 1 + len(cs.tokens)/256
		for _, t := range cs.tokens {
			p.bytes += 2*len(t.key) + len(t.chain) + 48
		}
	}

	c, err := d.conn(p)
	if err != nil {
		return err
	}
	t := tableRef()
	if p.replace && p.tableExists {
		c.DelTable(t)
	}
	c.AddTable(t)
	for _, name := range p.newSets {
		s, err := nftSet(rs, name)
		if err != nil {
			return err
		}
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("add set %s: %w", name, err)
		}
	}
	for _, name := range p.newChains {
		ch := &nftables.Chain{Name: name, Table: t}
		if h := rs.Chain(name).Hook; h != nil {
			ch.Type = nftables.ChainType(h.Type)
			ch.Hooknum = hookNum(h.Hook)
			ch.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(h.Priority))
			accept := nftables.ChainPolicyAccept
			ch.Policy = &accept
		}
		c.AddChain(ch)
	}
	for _, cs := range p.delElems {
		ref := &nftables.Set{Table: t, Name: cs.name}
		for _, chunk := range chunkTokens(cs.tokens) {
			if err := c.SetDeleteElements(ref, elements(chunk)); err != nil {
				return fmt.Errorf("delete elements of set %s: %w", cs.name, err)
			}
		}
	}
	for _, cs := range p.addElems {
		ref := &nftables.Set{Table: t, Name: cs.name}
		for _, chunk := range chunkTokens(cs.tokens) {
			if err := c.SetAddElements(ref, elements(chunk)); err != nil {
				return fmt.Errorf("add elements to set %s: %w", cs.name, err)
			}
		}
	}
	for _, name := range p.rewrite {
		c.FlushChain(&nftables.Chain{Name: name, Table: t})
	}
	for _, name := range fill {
		ch := &nftables.Chain{Name: name, Table: t}
		for _, e := range exprs[name] {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
		}
	}
	for _, name := range p.delChains {
		c.FlushChain(&nftables.Chain{Name: name, Table: t})
	}
	for _, name := range p.delChains {
		c.DelChain(&nftables.Chain{Name: name, Table: t})
	}
	for _, name := range p.delSets {
		c.DelSet(&nftables.Set{Table: t, Name: name})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("commit nftables transaction: %w", err)
	}
	return nil
}
