package api

import (
	"fmt"
	"strings"
)

// Domain patterns: the values of an egress rule's destination.domains and
// of a network set's allowedEgressDomains, with Calico Enterprise's
// semantics (docs.tigera.io "DNS policy", "Domain name matching"):
//
//   - without a wildcard a pattern matches exactly that name
//     ("google.com" is not "www.google.com");
//   - one "*", which must be a whole label, matches one or more labels at
//     its position: "*.google.com" matches www.google.com and
//     www.ipv6.google.com but not google.com; "www.*.com" matches
//     www.sun.com but not www.com; "update.*.mycompany.com" matches
//     update.secure.suite.mycompany.com;
//   - two wildcards ("*.*.mycompany.com"), a partial label ("www.g*.com")
//     and anything regexp-like are refused.
//
// Names compare case-insensitively and without the trailing dot.

// MaxDomainsPerRule bounds destination.domains and allowedEgressDomains.
const MaxDomainsPerRule = 256

// DomainPattern is a parsed domain pattern.
type DomainPattern struct {
	// Labels of the pattern, lower case; Wild is the index of the "*"
	// label, or -1.
	Labels []string
	Wild   int
}

// String is the canonical text of the pattern.
func (d DomainPattern) String() string { return strings.Join(d.Labels, ".") }

// ParseDomainPattern parses one pattern; the error says what is wrong
// with it (the caller names the field).
func ParseDomainPattern(s string) (DomainPattern, error) {
	name := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if name == "" {
		return DomainPattern{}, fmt.Errorf("%s is not a domain name: it is empty", quote(s))
	}
	if len(name) > 253 {
		return DomainPattern{}, fmt.Errorf("%s is not a domain name: it is longer than 253 characters", quote(s))
	}
	d := DomainPattern{Labels: strings.Split(name, "."), Wild: -1}
	for i, l := range d.Labels {
		switch {
		case l == "*":
			if d.Wild >= 0 {
				return DomainPattern{}, fmt.Errorf("%s has more than one wildcard: use one \"*\" (it matches one or more labels)", quote(s))
			}
			d.Wild = i
		case strings.Contains(l, "*"):
			return DomainPattern{}, fmt.Errorf("%s: a wildcard must be a whole label, as in \"*.example.com\"", quote(s))
		case !isDomainLabel(l):
			return DomainPattern{}, fmt.Errorf("%s is not a domain name: label %s must be 1 to 63 letters, digits, '-' or '_', not starting or ending with '-'", quote(s), quote(l))
		}
	}
	if d.Wild >= 0 && len(d.Labels) == 1 {
		return DomainPattern{}, fmt.Errorf("%s matches every name: name at least one label besides the wildcard", quote(s))
	}
	return d, nil
}

func isDomainLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Match reports whether a DNS name (any case, with or without the
// trailing dot) matches the pattern.
func (d DomainPattern) Match(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if d.Wild < 0 {
		return name == d.String()
	}
	labels := strings.Split(name, ".")
	before, after := d.Labels[:d.Wild], d.Labels[d.Wild+1:]
	// The wildcard takes one or more labels.
	if len(labels) < len(before)+len(after)+1 {
		return false
	}
	for i, l := range before {
		if labels[i] != l {
			return false
		}
	}
	tail := labels[len(labels)-len(after):]
	for i, l := range after {
		if tail[i] != l {
			return false
		}
	}
	for _, l := range labels[len(before) : len(labels)-len(after)] {
		if l == "" {
			return false
		}
	}
	return true
}

// checkDomains validates a list of domain patterns.
func (p *problems) checkDomains(field string, ds []string) {
	if len(ds) > MaxDomainsPerRule {
		p.add(field, "has %d domains; at most %d are allowed", len(ds), MaxDomainsPerRule)
	}
	for i, d := range ds {
		if _, err := ParseDomainPattern(d); err != nil {
			p.add(index(field, i), "%v", err)
		}
	}
}

// checkRuleDomains applies Calico Enterprise's limits on domains in a
// rule: only an egress Allow rule's destination may name them, and not
// together with other ways of naming the destination (nets, selectors,
// service accounts): the rule would mean "those addresses and these
// names" and Calico refuses it too. Ports and protocol combine.
func (p *problems) checkRuleDomains(f string, r *Rule, egress bool) {
	if len(r.Source.Domains) > 0 {
		p.add(at(f, "source.domains"), "is not allowed: domains name only an egress rule's destination")
	}
	ds := r.Destination.Domains
	if len(ds) == 0 {
		return
	}
	df := at(f, "destination.domains")
	if !egress {
		p.add(df, "is not allowed in an ingress rule: domains name only an egress rule's destination")
	}
	if r.Action != "" && !strings.EqualFold(r.Action, ActionAllow) {
		p.add(df, "is not allowed with action %s: domains may only allow traffic (Calico Enterprise's rule)", quote(r.Action))
	}
	d := &r.Destination
	for _, x := range []struct {
		field string
		set   bool
	}{
		{"nets", len(d.Nets) > 0}, {"notNets", len(d.NotNets) > 0},
		{"selector", d.Selector != ""}, {"notSelector", d.NotSelector != ""},
		{"namespaceSelector", d.NamespaceSelector != ""}, {"serviceAccounts", d.ServiceAccounts != nil},
	} {
		if x.set {
			p.add(df, "cannot be combined with destination.%s: write a separate rule for it", x.field)
		}
	}
	p.checkDomains(df, ds)
}
