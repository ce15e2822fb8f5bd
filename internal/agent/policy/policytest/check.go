package policytest

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// Check verifies the structural invariants of a compiled ruleset, the ones
// the kernel would otherwise reject in the middle of a transaction:
// objects are sorted and unique; every set, map and chain a rule or map
// element refers to exists with the right type; set elements are sorted
// and interval sets never overlap; no chain is both jumped to and a base
// chain; jumps form no loop.
func Check(rs *policy.Ruleset) error {
	if !slices.IsSortedFunc(rs.Sets, func(a, b *policy.Set) int { return cmpString(a.Name, b.Name) }) {
		return fmt.Errorf("sets are not sorted by name")
	}
	if !slices.IsSortedFunc(rs.Maps, func(a, b *policy.Map) int { return cmpString(a.Name, b.Name) }) {
		return fmt.Errorf("maps are not sorted by name")
	}
	if !slices.IsSortedFunc(rs.Chains, func(a, b *policy.Chain) int { return cmpString(a.Name, b.Name) }) {
		return fmt.Errorf("chains are not sorted by name")
	}
	names := map[string]bool{}
	for _, s := range rs.Sets {
		if names[s.Name] {
			return fmt.Errorf("set %s is defined twice", s.Name)
		}
		names[s.Name] = true
		if err := checkSet(s); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	for _, m := range rs.Maps {
		if names[m.Name] {
			return fmt.Errorf("map %s has the name of another set or map", m.Name)
		}
		names[m.Name] = true
		for i, e := range m.Elements {
			if i > 0 && m.Elements[i-1].Key.Compare(e.Key) >= 0 {
				return fmt.Errorf("map %s: keys not sorted or duplicated at %d", m.Name, i)
			}
			if err := checkVerdict(rs, e.Verdict); err != nil {
				return fmt.Errorf("map %s element %d: %w", m.Name, i, err)
			}
		}
	}
	chainNames := map[string]bool{}
	for _, c := range rs.Chains {
		if chainNames[c.Name] {
			return fmt.Errorf("chain %s is defined twice", c.Name)
		}
		chainNames[c.Name] = true
		if len(c.Name) > 255 {
			return fmt.Errorf("chain name %q is longer than 255 bytes", c.Name)
		}
		for i, r := range c.Rules {
			if err := checkRule(rs, r, chainFamily(c.Name)); err != nil {
				return fmt.Errorf("chain %s rule %d (%s): %w", c.Name, i, r, err)
			}
		}
	}
	return checkLoops(rs)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func checkSet(s *policy.Set) error {
	for i, e := range s.Elements {
		if i > 0 && s.Elements[i-1].Compare(e) >= 0 {
			return fmt.Errorf("elements not sorted or duplicated at %d", i)
		}
		switch s.Type {
		case policy.SetAddr4, policy.SetAddr6:
			if !e.Prefix.IsValid() || e.Prefix.Addr().Is4() != (s.Type == policy.SetAddr4) || e.Prefix != e.Prefix.Masked() {
				return fmt.Errorf("element %v is not a masked prefix of the set's family", e.Prefix)
			}
			for _, o := range s.Elements[:i] {
				if o.Prefix.Overlaps(e.Prefix) {
					return fmt.Errorf("elements %v and %v overlap", o.Prefix, e.Prefix)
				}
			}
		case policy.SetPort:
			if e.PortEnd < e.Port {
				return fmt.Errorf("empty port range %d-%d", e.Port, e.PortEnd)
			}
			if i > 0 && uint32(s.Elements[i-1].PortEnd) >= uint32(e.Port) {
				return fmt.Errorf("port ranges overlap at %d", i)
			}
		case policy.SetIfAddr4, policy.SetIfAddr6, policy.SetAddrPort4, policy.SetAddrPort6, policy.SetLearned4, policy.SetLearned6:
			if !e.Addr.IsValid() || e.Addr.Is4() != (s.Type.Family() == 4) {
				return fmt.Errorf("element address %v is not of the set's family", e.Addr)
			}
		default:
			return fmt.Errorf("unknown set type %d", s.Type)
		}
	}
	return nil
}

func needSet(rs *policy.Ruleset, name string, types ...policy.SetType) error {
	s := rs.Set(name)
	if s == nil {
		return fmt.Errorf("refers to missing set %s", name)
	}
	if !slices.Contains(types, s.Type) {
		return fmt.Errorf("set %s has type %d, want one of %v", name, s.Type, types)
	}
	return nil
}

func familySet(family int, v4, v6 policy.SetType) policy.SetType {
	if family == 4 {
		return v4
	}
	return v6
}

// chainFamily is the family of a per-family chain, 0 for the others.
func chainFamily(name string) int { return policy.ChainFamily(name) }

// checkFamilyTarget checks that a rule of family f (0: any) only enters a
// per-family chain of its own family.
func checkFamilyTarget(rs *policy.Ruleset, f int, v policy.Verdict) error {
	var targets []string
	switch v.Kind {
	case policy.Jump, policy.Goto:
		targets = []string{v.Chain}
	case policy.VMap:
		if m := rs.Map(v.Map); m != nil {
			for _, e := range m.Elements {
				targets = append(targets, e.Verdict.Chain)
			}
		}
	}
	for _, t := range targets {
		if g := chainFamily(t); g != 0 && g != f {
			return fmt.Errorf("enters the IPv%d chain %s from a rule that does not match IPv%d", g, t, g)
		}
	}
	return nil
}

func checkRule(rs *policy.Ruleset, r policy.Rule, chainFam int) error {
	family := chainFam
	for _, m := range r.Matches {
		switch m := m.(type) {
		case policy.NFProto:
			family = m.Family
		case policy.AddrSet:
			if m.Family != family {
				return fmt.Errorf("reads IPv%d addresses without matching the family first", m.Family)
			}
			if err := needSet(rs, m.Set, familySet(m.Family, policy.SetAddr4, policy.SetAddr6), familySet(m.Family, policy.SetLearned4, policy.SetLearned6)); err != nil {
				return err
			}
		case policy.AddrPrefix:
			f := 4
			if m.Prefix.Addr().Is6() {
				f = 6
			}
			if f != family {
				return fmt.Errorf("matches %v without matching IPv%d first", m.Prefix, f)
			}
		case policy.AddrPortSet:
			if m.Family != family {
				return fmt.Errorf("reads IPv%d addresses without matching the family first", m.Family)
			}
			if err := needSet(rs, m.Set, familySet(m.Family, policy.SetAddrPort4, policy.SetAddrPort6)); err != nil {
				return err
			}
		case policy.IfAddrSet:
			if m.Family != family {
				return fmt.Errorf("reads IPv%d addresses without matching the family first", m.Family)
			}
			if err := needSet(rs, m.Set, familySet(m.Family, policy.SetIfAddr4, policy.SetIfAddr6)); err != nil {
				return err
			}
		case policy.PortSet:
			if err := needSet(rs, m.Set, policy.SetPort); err != nil {
				return err
			}
		case policy.ICMP:
			if m.Family != family {
				return fmt.Errorf("matches ICMP of IPv%d without matching the family first", m.Family)
			}
		}
	}
	for _, s := range r.Stmts {
		switch s := s.(type) {
		case policy.DNAT:
			if fam := addrFamily(s.Addr); fam != family {
				return fmt.Errorf("DNATs to IPv%d without matching the family first", fam)
			}
		case policy.SNAT:
			if fam := addrFamily(s.Addr); fam != family {
				return fmt.Errorf("SNATs to IPv%d without matching the family first", fam)
			}
		case policy.Log:
			if len(s.Prefix) > 127 {
				return fmt.Errorf("log prefix is %d bytes long", len(s.Prefix))
			}
		}
	}
	if err := checkFamilyTarget(rs, family, r.Verdict); err != nil {
		return err
	}
	return checkVerdict(rs, r.Verdict)
}

func addrFamily(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func checkVerdict(rs *policy.Ruleset, v policy.Verdict) error {
	switch v.Kind {
	case policy.Jump, policy.Goto:
		c := rs.Chain(v.Chain)
		if c == nil {
			return fmt.Errorf("jumps to missing chain %s", v.Chain)
		}
		if c.Hook != nil {
			return fmt.Errorf("jumps to base chain %s", v.Chain)
		}
	case policy.VMap:
		m := rs.Map(v.Map)
		if m == nil {
			return fmt.Errorf("looks up missing map %s", v.Map)
		}
		want := policy.MapIfName
		if v.Key == policy.KeyProtoDport {
			want = policy.MapProtoPort
		}
		if m.Type != want {
			return fmt.Errorf("looks up map %s with the wrong key", v.Map)
		}
	}
	return nil
}

// checkLoops fails if chains jump in a circle (the kernel refuses that).
func checkLoops(rs *policy.Ruleset) error {
	edges := map[string][]string{}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			switch r.Verdict.Kind {
			case policy.Jump, policy.Goto:
				edges[c.Name] = append(edges[c.Name], r.Verdict.Chain)
			case policy.VMap:
				for _, e := range rs.Map(r.Verdict.Map).Elements {
					edges[c.Name] = append(edges[c.Name], e.Verdict.Chain)
				}
			}
		}
	}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("chain %s is part of a jump loop", n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, m := range edges[n] {
			if err := visit(m); err != nil {
				return err
			}
		}
		state[n] = 2
		return nil
	}
	for _, c := range rs.Chains {
		if err := visit(c.Name); err != nil {
			return err
		}
	}
	return nil
}
