package api

import (
	"math"
	"strconv"
	"strings"
)

const globalSelector = "global()"

// policySpec is what NetworkPolicy and GlobalNetworkPolicy share.
type policySpec struct {
	tier, selector, serviceAccountSelector string
	order                                  *float64
	types                                  []string
	ingress, egress                        []Rule
	global                                 bool
}

func (p *problems) checkNetworkPolicy(s *NetworkPolicySpec) {
	p.checkPolicy(policySpec{s.Tier, s.Selector, s.ServiceAccountSelector, s.Order, s.Types, s.Ingress, s.Egress, false})
}

func (p *problems) checkGlobalNetworkPolicy(s *GlobalNetworkPolicySpec) {
	p.checkPolicy(policySpec{s.Tier, s.Selector, s.ServiceAccountSelector, s.Order, s.Types, s.Ingress, s.Egress, true})
	p.checkSelector("spec.namespaceSelector", s.NamespaceSelector)
	p.noGlobalSelector("spec.namespaceSelector", s.NamespaceSelector)
	// Host endpoint policy modes Tabby does not implement: refused here
	// rather than accepted and then not enforced (or quarantined by every
	// agent; docs/design/policy.md "Quarantine").
	if s.DoNotTrack {
		p.add("spec.doNotTrack", "true is not supported: Tabby has no untracked (raw table) policy; remove the field or set it to false")
	}
	if s.PreDNAT {
		p.add("spec.preDNAT", "true is not supported: Tabby has no pre-DNAT host endpoint policy; remove the field or set it to false")
	}
	if s.ApplyOnForward {
		p.add("spec.applyOnForward", "true is not supported: Tabby's host endpoint policy never applies to forwarded traffic; remove the field or set it to false")
	}
}

func (p *problems) checkPolicy(s policySpec) {
	if s.tier != "" && (len(s.tier) > maxLabelLen || !labelNameRegex.MatchString(s.tier)) {
		p.add("spec.tier", "%s is not a tier name: use lowercase letters, digits and '-'", quote(s.tier))
	}
	if s.order != nil && (math.IsNaN(*s.order) || math.IsInf(*s.order, 0)) {
		p.add("spec.order", "%v is not a number", *s.order)
	}
	p.checkSelector("spec.selector", s.selector)
	p.noGlobalSelector("spec.selector", s.selector)
	p.checkSelector("spec.serviceAccountSelector", s.serviceAccountSelector)
	p.noGlobalSelector("spec.serviceAccountSelector", s.serviceAccountSelector)
	seen := map[string]bool{}
	for i, t := range s.types {
		f := index("spec.types", i)
		if !p.oneOf(f, t, PolicyTypeIngress, PolicyTypeEgress) {
			continue
		}
		if seen[t] {
			p.add(f, "%s is listed twice", quote(t))
		}
		seen[t] = true
	}
	if len(s.types) > 0 {
		// Rules of a direction the policy does not apply to would be silently ignored.
		if len(s.ingress) > 0 && !seen[PolicyTypeIngress] {
			p.add("spec.types", "does not include Ingress, so the ingress rules would never apply")
		}
		if len(s.egress) > 0 && !seen[PolicyTypeEgress] {
			p.add("spec.types", "does not include Egress, so the egress rules would never apply")
		}
	}
	p.checkRules("spec.ingress", s.ingress)
	p.checkRules("spec.egress", s.egress)
}

func (p *problems) checkProfile(s *ProfileSpec) {
	p.checkRules("spec.ingress", s.Ingress)
	p.checkRules("spec.egress", s.Egress)
	p.checkLabels("spec.labelsToApply", s.LabelsToApply)
}

func (p *problems) noGlobalSelector(field, s string) {
	if strings.Contains(s, globalSelector) {
		p.add(field, "%s: global() may only be used in a rule's namespaceSelector", quote(s))
	}
}

func (p *problems) checkRules(field string, rules []Rule) {
	if len(rules) > maxRules {
		p.add(field, "has %d rules; at most %d are allowed", len(rules), maxRules)
	}
	egress := strings.HasSuffix(field, "egress")
	for i := range rules {
		p.checkRule(index(field, i), &rules[i])
		p.checkRuleDomains(index(field, i), &rules[i], egress)
	}
}

func isICMP(n uint8) bool { return n == 1 || n == 58 }

func protoNumber(pr *Protocol) (uint8, bool) {
	if pr == nil {
		return 0, false
	}
	return pr.Number()
}

func (p *problems) checkRule(f string, r *Rule) {
	if r.Action == "" {
		p.add(at(f, "action"), "is required; use Allow, Deny, Log or Pass")
	} else {
		p.oneOf(at(f, "action"), r.Action, ActionAllow, ActionDeny, ActionLog, ActionPass)
	}
	if r.IPVersion != nil && *r.IPVersion != 4 && *r.IPVersion != 6 {
		p.add(at(f, "ipVersion"), "%d is not an IP version; use 4 or 6", *r.IPVersion)
	}
	p.checkProtocol(at(f, "protocol"), r.Protocol)
	p.checkProtocol(at(f, "notProtocol"), r.NotProtocol)
	proto, protoOK := protoNumber(r.Protocol)
	notProto, _ := protoNumber(r.NotProtocol)

	// ICMP.
	for _, x := range []struct {
		field string
		icmp  *ICMPFields
	}{{"icmp", r.ICMP}, {"notICMP", r.NotICMP}} {
		if x.icmp == nil {
			continue
		}
		p.checkICMP(at(f, x.field), x.icmp)
		if !protoOK || !isICMP(proto) {
			p.add(at(f, x.field), "requires protocol ICMP or ICMPv6")
		}
	}
	if r.IPVersion != nil {
		if proto == 1 || notProto == 1 {
			if *r.IPVersion != 4 {
				p.add(at(f, "ipVersion"), "must be 4 with protocol ICMP")
			}
		}
		if proto == 58 || notProto == 58 {
			if *r.IPVersion != 6 {
				p.add(at(f, "ipVersion"), "must be 6 with protocol ICMPv6")
			}
		}
	}

	// Ports need a protocol that has them.
	portsOK := protoOK && r.Protocol.SupportsPorts()
	for _, e := range []struct {
		field string
		rule  *EntityRule
	}{{"source", &r.Source}, {"destination", &r.Destination}} {
		ef := at(f, e.field)
		for _, l := range []struct {
			field string
			ports []Port
		}{{"ports", e.rule.Ports}, {"notPorts", e.rule.NotPorts}} {
			if len(l.ports) > 0 && !portsOK {
				p.add(at(ef, l.field), "ports are allowed only with protocol TCP, UDP, SCTP or UDPLite")
			}
			for i, port := range l.ports {
				p.checkPort(index(at(ef, l.field), i), port)
			}
		}
		p.checkEntity(ef, e.rule)
	}

	// Nets: one IP version per rule, matching ipVersion.
	var v4, v6 bool
	for _, l := range []struct {
		field string
		nets  []string
	}{
		{"source.nets", r.Source.Nets}, {"source.notNets", r.Source.NotNets},
		{"destination.nets", r.Destination.Nets}, {"destination.notNets", r.Destination.NotNets},
	} {
		for i, n := range l.nets {
			nf := index(at(f, l.field), i)
			v := p.checkNet(nf, n, 0)
			switch {
			case v == 0:
			case r.IPVersion != nil && (*r.IPVersion == 4 || *r.IPVersion == 6) && v != *r.IPVersion:
				p.add(nf, "%s is an IPv%d network but the rule's ipVersion is %d", quote(n), v, *r.IPVersion)
			case v == 4 && v6 || v == 6 && v4:
				p.add(nf, "%s mixes IP versions: the rule already matches IPv%d networks", quote(n), 10-v)
			}
			v4 = v4 || v == 4
			v6 = v6 || v == 6
		}
	}

	// Matches Tabby does not implement are refused, not ignored: an
	// ignored match would let through what the rule meant to restrict.
	for _, x := range []struct {
		field string
		set   bool
	}{{"source.services", r.Source.Services != nil}, {"destination.services", r.Destination.Services != nil}} {
		if x.set {
			p.add(at(f, x.field), "is not supported: Tabby does not resolve Kubernetes services; match the service's endpoints with a selector and ports")
		}
	}
	if r.HTTP != nil {
		p.add(at(f, "http"), "is not supported: Tabby has no application-layer (HTTP) proxy; remove the match (and restrict by port)")
	}
	if r.Metadata != nil {
		p.checkAnnotations(at(f, "metadata.annotations"), r.Metadata.Annotations)
	}
}

func (p *problems) checkProtocol(field string, pr *Protocol) {
	if pr == nil {
		return
	}
	if _, ok := pr.Number(); !ok {
		p.add(field, "%s is not a protocol; use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255", quote(string(*pr)))
	}
}

func (p *problems) checkICMP(f string, icmp *ICMPFields) {
	if icmp.Type != nil && (*icmp.Type < 0 || *icmp.Type > 254) {
		p.add(at(f, "type"), "%d is not an ICMP type; use 0 to 254", *icmp.Type)
	}
	if icmp.Code != nil {
		if icmp.Type == nil {
			p.add(at(f, "code"), "requires type")
		}
		if *icmp.Code < 0 || *icmp.Code > 255 {
			p.add(at(f, "code"), "%d is not an ICMP code; use 0 to 255", *icmp.Code)
		}
	}
}

func (p *problems) checkPort(f string, port Port) {
	switch {
	case port.Invalid != "":
		p.add(f, "%s is not a port or range", quote(port.Invalid))
	case port.PortName != "":
		if !isPortName(port.PortName) || port.MinPort != 0 || port.MaxPort != 0 {
			p.add(f, "%s is not a port name", quote(port.PortName))
		}
	case port.MinPort == 0:
		p.add(f, "%s is not allowed: ports are 1 to 65535", quote(port.String()))
	case port.MinPort > port.MaxPort:
		p.add(f, "%s is not a range: the first port is larger than the last", quote(port.String()))
	}
}

func (p *problems) checkEntity(f string, e *EntityRule) {
	p.checkSelector(at(f, "selector"), e.Selector)
	p.noGlobalSelector(at(f, "selector"), e.Selector)
	p.checkSelector(at(f, "notSelector"), e.NotSelector)
	p.noGlobalSelector(at(f, "notSelector"), e.NotSelector)
	p.checkSelector(at(f, "namespaceSelector"), e.NamespaceSelector)
	if ns := strings.TrimSpace(e.NamespaceSelector); strings.Contains(ns, "global(") && ns != globalSelector {
		p.add(at(f, "namespaceSelector"), "%s: global() cannot be combined with other selectors", quote(e.NamespaceSelector))
	}
	if sa := e.ServiceAccounts; sa != nil {
		p.checkSelector(at(f, "serviceAccounts.selector"), sa.Selector)
		for i, n := range sa.Names {
			if n == "" {
				p.add(index(at(f, "serviceAccounts.names"), i), "is empty")
			}
		}
	}
}

// checkTier checks a Tier; the built-in ones keep Calico's order and
// default action.
func (p *problems) checkTier(name string, s *TierSpec) {
	if len(name) > maxLabelLen || !labelNameRegex.MatchString(name) {
		p.add("metadata.name", "%s is not a tier name: use at most 63 lowercase letters, digits and '-'", quote(name))
	}
	if s.Order != nil && (math.IsNaN(*s.Order) || math.IsInf(*s.Order, 0)) {
		p.add("spec.order", "%v is not a number", *s.Order)
	}
	if s.DefaultAction != "" {
		p.oneOf("spec.defaultAction", s.DefaultAction, ActionDeny, ActionPass)
	}
	b, ok := BuiltInTiers()[name]
	if !ok {
		return
	}
	if s.Order == nil || *s.Order != *b.Order {
		got := "unset"
		if s.Order != nil {
			got = strconv.FormatFloat(*s.Order, 'f', -1, 64)
		}
		p.add("spec.order", "%s: the %s tier's order is %s (built in, as in Calico)", got, name, strconv.FormatFloat(*b.Order, 'f', -1, 64))
	}
	if s.DefaultAction != "" && s.DefaultAction != b.DefaultAction {
		p.add("spec.defaultAction", "%s: the %s tier's default action is %s (built in, as in Calico)", quote(s.DefaultAction), name, b.DefaultAction)
	}
}

// checkTieredName applies Calico's naming of tiered policies: a policy in
// a tier other than default is named "<tier>.<name>".
func (p *problems) checkTieredName(name, tier string) {
	if tier == "" || tier == DefaultTierName || name == "" {
		return
	}
	if !strings.HasPrefix(name, tier+".") {
		p.add("metadata.name", "%s: a policy in tier %s must be named \"%s.<name>\" (as in Calico)", quote(name), quote(tier), tier)
	}
}
