package policy

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
)

// policyInfo is a NetworkPolicy or GlobalNetworkPolicy, parsed.
type policyInfo struct {
	kind, namespace, name string
	id                    string // "default/web" or "web": ties in order sort by it
	tier                  *tierInfo
	order                 float64
	sel, nsSel, saSel     *selector.Selector // sel nil: every endpoint in scope (quarantine only)
	global                bool
	hostOnly              bool // namespaceSelector global(): host endpoints only
	typeIn, typeOut       bool
	chainIn, chainOut     string
	passIn, passOut       bool // has a Pass rule
	parsedIn, parsedOut   []*parsedRule
	// quarantined is why the policy could not be compiled ("": it
	// could). A quarantined policy's chains drop everything: the
	// endpoints it selects fail closed in its directions, at its place
	// in the order.
	quarantined string
}

func (p *policyInfo) owner() string {
	return p.kind + " " + p.id
}

// Quarantine is an object the compiler could not compile. Everything else
// is compiled as usual; what the object would have decided is denied (see
// docs/design/policy.md, "Quarantine").
type Quarantine struct {
	Kind      string // NetworkPolicy, GlobalNetworkPolicy or Profile
	Namespace string // NetworkPolicy only
	Name      string
	Reason    string // the first problem found, naming the field and value
}

// ID is "Kind/name" or "Kind/namespace/name".
func (q Quarantine) ID() string {
	if q.Namespace != "" {
		return q.Kind + "/" + q.Namespace + "/" + q.Name
	}
	return q.Kind + "/" + q.Name
}

func hasPass(rules []api.Rule) bool {
	for _, r := range rules {
		if strings.EqualFold(r.Action, api.ActionPass) {
			return true
		}
	}
	return false
}

// policyTypes applies Calico's defaulting: Ingress unless the policy only
// has egress rules; both when it has both.
func policyTypes(owner string, types []string, nIn, nOut int) (in, out bool, err error) {
	if len(types) == 0 {
		return nIn > 0 || nOut == 0, nOut > 0, nil
	}
	for i, t := range types {
		switch strings.ToLower(t) {
		case "ingress":
			in = true
		case "egress":
			out = true
		default:
			return false, false, fmt.Errorf("%s: spec.types[%d]: %q is not Ingress or Egress", owner, i, t)
		}
	}
	return in, out, nil
}

// policySpec is what NetworkPolicy and GlobalNetworkPolicy share.
type policySpec struct {
	tier, selector, saSelector string
	order                      *float64
	types                      []string
	ingress, egress            []api.Rule
}

func (c *compiler) loadPolicies() error {
	for i, np := range c.state.Policies {
		if np == nil {
			return fmt.Errorf("policies[%d] is nil", i)
		}
		c.addPolicy(c.policyOf(np))
	}
	for i, gp := range c.state.GlobalPolicies {
		if gp == nil {
			return fmt.Errorf("globalPolicies[%d] is nil", i)
		}
		c.addPolicy(c.policyOf(gp))
	}
	slices.SortStableFunc(c.policies, compareTiered)
	return nil
}

// policyOf is the unparsed policyInfo of a NetworkPolicy or
// GlobalNetworkPolicy, its spec, and the check of the fields only a
// global policy has (nil for a namespaced one); p is nil for any other
// object.
func (c *compiler) policyOf(r api.Resource) (p *policyInfo, sp policySpec, extra func() error) {
	switch o := r.(type) {
	case *api.NetworkPolicy:
		ns := namespaceOf(&o.ObjectMeta)
		p = &policyInfo{kind: "NetworkPolicy", namespace: ns, name: o.Name, id: ns + "/" + o.Name}
		p.chainIn, p.chainOut = chainName("pi-", p.id), chainName("po-", p.id)
		s := o.Spec
		return p, policySpec{s.Tier, s.Selector, s.ServiceAccountSelector, s.Order, s.Types, s.Ingress, s.Egress}, nil
	case *api.GlobalNetworkPolicy:
		p = &policyInfo{kind: "GlobalNetworkPolicy", name: o.Name, id: o.Name, global: true}
		p.chainIn, p.chainOut = chainName("gpi-", p.id), chainName("gpo-", p.id)
		s := o.Spec
		return p, policySpec{s.Tier, s.Selector, s.ServiceAccountSelector, s.Order, s.Types, s.Ingress, s.Egress},
			func() error { return c.globalOnly(p, &o.Spec) }
	}
	return nil, policySpec{}, nil
}

// addPolicy parses a policy; one that does not parse is quarantined
// rather than failing the compile.
func (c *compiler) addPolicy(p *policyInfo, sp policySpec, extra func() error) {
	err := c.parsePolicy(p, sp, extra)
	if err != nil {
		c.quarantinePolicy(p, sp, err)
	}
	c.policies = append(c.policies, p)
}

// globalOnly checks and parses the fields only a GlobalNetworkPolicy has.
func (c *compiler) globalOnly(p *policyInfo, sp *api.GlobalNetworkPolicySpec) error {
	// The scope first, so that a policy quarantined for another reason
	// still selects what it says.
	if sp.NamespaceSelector != "" {
		nsSel, err := c.parseSelector("spec.namespaceSelector", sp.NamespaceSelector)
		if err != nil {
			return fmt.Errorf("%s: %w", p.owner(), err)
		}
		if nsSel.IsGlobal() {
			// global(): the policy selects cluster-scoped endpoints
			// (host endpoints) only.
			p.hostOnly = true
		} else {
			p.nsSel = nsSel
		}
	}
	switch {
	case sp.DoNotTrack:
		return fmt.Errorf("%s: spec.doNotTrack: true: untracked policy is not supported", p.owner())
	case sp.PreDNAT:
		return fmt.Errorf("%s: spec.preDNAT: true: pre-DNAT policy is not supported", p.owner())
	}
	return nil
}

// parsePolicy parses and validates every field of a policy, whether or not
// it applies on this node, so that a bad policy is quarantined on every
// node alike.
func (c *compiler) parsePolicy(p *policyInfo, sp policySpec, extra func() error) error {
	var err error
	if p.tier, err = c.tierOf(p, sp.tier); err != nil {
		return err
	}
	if extra != nil {
		if err := extra(); err != nil {
			return err
		}
	}
	p.order = math.Inf(1)
	if sp.order != nil {
		if math.IsNaN(*sp.order) {
			return fmt.Errorf("%s: spec.order is not a number", p.owner())
		}
		p.order = *sp.order
	}
	if p.sel, err = c.parseSelector("spec.selector", sp.selector); err != nil {
		return fmt.Errorf("%s: %w", p.owner(), err)
	}
	if sp.saSelector != "" {
		if p.saSel, err = c.parseSelector("spec.serviceAccountSelector", sp.saSelector); err != nil {
			return fmt.Errorf("%s: %w", p.owner(), err)
		}
	}
	if p.typeIn, p.typeOut, err = policyTypes(p.owner(), sp.types, len(sp.ingress), len(sp.egress)); err != nil {
		return err
	}
	p.passIn, p.passOut = hasPass(sp.ingress), hasPass(sp.egress)
	ns := ""
	if !p.global {
		ns = p.namespace
	}
	p.parsedIn, p.parsedOut, err = c.parseRules(p.owner(), ns, p.chainIn, p.chainOut, sp.ingress, sp.egress)
	return err
}

// quarantinePolicy makes p fail closed. Which endpoints it selects, in
// which directions and at which place in the order is read as far as the
// policy allows; what cannot be read is taken in the strictest way: a
// selector that does not parse selects every endpoint in the policy's
// scope, types that do not parse mean both directions, an order that is
// not a number puts it first.
func (c *compiler) quarantinePolicy(p *policyInfo, sp policySpec, err error) {
	p.quarantined = err.Error()
	p.passIn, p.passOut, p.parsedIn, p.parsedOut = false, false, nil, nil
	if p.tier, err = c.tierOf(p, sp.tier); err != nil {
		// A tier that does not exist (yet) comes first.
		if c.missingTiers[sp.tier] == nil {
			c.missingTiers[sp.tier] = &tierInfo{name: sp.tier, order: math.Inf(-1)}
		}
		p.tier = c.missingTiers[sp.tier]
	}
	p.order = math.Inf(1)
	if sp.order != nil {
		p.order = *sp.order
		if math.IsNaN(p.order) {
			p.order = math.Inf(-1)
		}
	}
	p.sel, _ = c.parseSelector("spec.selector", sp.selector)
	p.saSel = nil
	if sp.saSelector != "" {
		p.saSel, _ = c.parseSelector("spec.serviceAccountSelector", sp.saSelector)
	}
	var terr error
	if p.typeIn, p.typeOut, terr = policyTypes(p.owner(), sp.types, len(sp.ingress), len(sp.egress)); terr != nil {
		p.typeIn, p.typeOut = true, true
	}
	c.quarantine = append(c.quarantine, Quarantine{Kind: p.kind, Namespace: p.namespace, Name: p.name, Reason: p.quarantined})
}

// parseRules validates and parses every rule of a policy or profile,
// whether or not it applies on this node, so that a bad object is
// quarantined on every node alike.
func (c *compiler) parseRules(owner, ns, chainIn, chainOut string, ingress, egress []api.Rule) (in, out []*parsedRule, err error) {
	for _, dir := range []struct {
		field, chain string
		rules        []api.Rule
		out          *[]*parsedRule
	}{{"spec.ingress", chainIn, ingress, &in}, {"spec.egress", chainOut, egress, &out}} {
		for i, r := range dir.rules {
			x := ruleCtx{owner: owner, field: fmt.Sprintf("%s[%d]", dir.field, i), namespace: ns, logPrefix: logPrefix(dir.chain)}
			pr, err := c.parseRule(x, r)
			if err != nil {
				return nil, nil, err
			}
			*dir.out = append(*dir.out, pr)
		}
	}
	return in, out, nil
}

// tierInfo is a tier: the built-in ones, or a stored Tier object.
type tierInfo struct {
	name  string
	order float64 // unset: +Inf (after every ordered tier)
	pass  bool    // defaultAction Pass (else Deny)
}

// loadTiers reads the built-in tiers and the stored Tier objects. A stored
// built-in tier keeps its built-in order and action (validation refuses
// others); a bad order is taken as unset and a bad default action as Deny,
// with a warning.
func (c *compiler) loadTiers() error {
	c.tiers, c.missingTiers = map[string]*tierInfo{}, map[string]*tierInfo{}
	for name, s := range api.BuiltInTiers() {
		c.tiers[name] = &tierInfo{name: name, order: *s.Order, pass: s.DefaultAction == api.ActionPass}
	}
	for i, t := range c.state.Tiers {
		if t == nil {
			return fmt.Errorf("tiers[%d] is nil", i)
		}
		if _, builtIn := c.tiers[t.Name]; builtIn {
			continue
		}
		ti := &tierInfo{name: t.Name, order: math.Inf(1)}
		if o := t.Spec.Order; o != nil {
			if math.IsNaN(*o) {
				c.warnf("Tier %s: spec.order is not a number; the tier is applied last", t.Name)
			} else {
				ti.order = *o
			}
		}
		switch strings.ToLower(t.Spec.DefaultAction) {
		case "", "deny":
		case "pass":
			ti.pass = true
		default:
			c.warnf("Tier %s: spec.defaultAction: %q is not Deny or Pass; using Deny", t.Name, t.Spec.DefaultAction)
		}
		c.tiers[t.Name] = ti
	}
	return nil
}

// tierOf finds a policy's tier.
func (c *compiler) tierOf(p *policyInfo, name string) (*tierInfo, error) {
	if name == "" {
		name = api.DefaultTierName
	}
	if t, ok := c.tiers[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("%s: spec.tier: %q: no such Tier (create the Tier first)", p.owner(), name)
}

// compareTiered orders policies as Calico does: by tier (order, then
// name), then by policy order (unset last), then by name.
func compareTiered(a, b *policyInfo) int {
	if c := cmp.Compare(a.tier.order, b.tier.order); c != 0 {
		return c
	}
	if c := strings.Compare(a.tier.name, b.tier.name); c != 0 {
		return c
	}
	if c := cmp.Compare(a.order, b.order); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// tierRules evaluates one tier's applicable policies in order. Allow
// returns, Deny drops; a Pass sets MarkPass, which skips the tier's
// remaining policies. At the end of the tier a packet no policy decided
// gets the tier's default action: Deny drops it (then ended is true when
// nothing can follow), Pass goes on to the next tier (more: there is one,
// so MarkPass is cleared for it) or, after the last tier, to the profiles.
func (c *compiler) tierRules(pols []*policyInfo, ingress, more bool) (rules []Rule, ended bool) {
	passPossible := false
	for _, p := range pols {
		ch := c.policyChain(p, ingress)
		jump := Rule{Verdict: Verdict{Kind: Jump, Chain: ch}}
		if passPossible {
			jump.Matches = []Match{passClear}
		}
		rules = append(rules, jump, returnIfAccept)
		if (ingress && p.passIn) || (!ingress && p.passOut) {
			passPossible = true
		}
	}
	if !pols[0].tier.pass {
		if !passPossible {
			// End of the tier: no policy allowed the packet.
			return append(rules, Rule{Verdict: Verdict{Kind: Drop}}), true
		}
		rules = append(rules, Rule{Matches: []Match{passClear}, Verdict: Verdict{Kind: Drop}})
	}
	if passPossible && more {
		rules = append(rules, clearPass)
	}
	return rules, false
}

// quarantinedChain is the body of a quarantined policy's or profile's
// chain: whatever reaches it is dropped.
var quarantinedChain = []Rule{{Verdict: Verdict{Kind: Drop}}}
