package api

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/tabbynet/tabby/internal/api/selector"
)

// Name rules, as Calico's validator (k8s DNS-1123 formats).
const (
	nameLabelFmt     = `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
	nameSubdomainFmt = nameLabelFmt + `(\.` + nameLabelFmt + `)*`

	maxNameLen     = 253
	maxLabelLen    = 63
	maxAnnotations = 256 << 10
	maxRules       = 1024
)

var (
	nameRegex      = regexp.MustCompile(`^` + nameSubdomainFmt + `$`)
	labelNameRegex = regexp.MustCompile(`^` + nameLabelFmt + `$`)
	// NetworkPolicy: "name", "tier.name", or Kubernetes-derived "knp.default.<name>".
	networkPolicyNameRegex = regexp.MustCompile(`^((` + nameLabelFmt + `)(\.` + nameLabelFmt + `)?|((knp|ossg)\.default\.(` + nameSubdomainFmt + `)))$`)
	// GlobalNetworkPolicy: "name" or "tier.name".
	globalNetworkPolicyNameRegex = regexp.MustCompile(`^(` + nameLabelFmt + `\.)?` + nameLabelFmt + `$`)
	qualifiedNameRegex           = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	interfaceRegex               = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
	ignoredInterfaceRegex        = regexp.MustCompile(`^[a-zA-Z0-9_.*-]{1,15}$`)
	containerIDRegex             = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	logLevels                    = []string{"Trace", "Debug", "Info", "Warning", "Error", "Fatal"}
)

const nameRule = "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"

// checkName checks a Calico resource name (DNS-1123 subdomain).
func (p *problems) checkName(field, name string) {
	switch {
	case name == "":
		p.add(field, "is required")
	case len(name) > maxNameLen:
		p.add(field, "%s is %d characters long; at most %d are allowed", quote(name), len(name), maxNameLen)
	case !nameRegex.MatchString(name):
		p.add(field, "%s is not a valid name: %s", quote(name), nameRule)
	}
}

// checkOptionalName checks a reference to another resource by name, if set.
func (p *problems) checkOptionalName(field, name string) {
	if name != "" {
		p.checkName(field, name)
	}
}

// checkConfigName checks the name of a singleton configuration: "default",
// or, when perNode is set, "node.<node name>".
func (p *problems) checkConfigName(field, name string, perNode bool) {
	if name == "default" {
		return
	}
	if perNode {
		if node, ok := strings.CutPrefix(name, "node."); ok && node != "" && len(name) <= maxNameLen && nameRegex.MatchString(node) {
			return
		}
		p.add(field, "%s is not allowed: the name must be \"default\" or \"node.<node name>\"", quote(name))
		return
	}
	p.add(field, "%s is not allowed: the name must be \"default\"", quote(name))
}

// checkQualifiedName checks a label or annotation key (k8s rules):
// an optional DNS subdomain prefix and '/', then a name of at most 63
// characters made of alphanumerics, '-', '_' and '.'.
func qualifiedNameProblem(k string) string {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		if prefix == "" {
			return "the prefix before '/' is empty"
		}
		if len(prefix) > maxNameLen || !nameRegex.MatchString(prefix) {
			return fmt.Sprintf("the prefix %s must be a DNS subdomain (%s)", quote(prefix), nameRule)
		}
		name = rest
	}
	switch {
	case name == "":
		return "the name is empty"
	case len(name) > maxLabelLen:
		return fmt.Sprintf("the name is %d characters long; at most %d are allowed", len(name), maxLabelLen)
	case !qualifiedNameRegex.MatchString(name):
		return "the name must consist of letters, digits, '-', '_' or '.', and start and end with a letter or digit"
	}
	return ""
}

func labelValueProblem(v string) string {
	switch {
	case v == "":
		return ""
	case len(v) > maxLabelLen:
		return fmt.Sprintf("it is %d characters long; at most %d are allowed", len(v), maxLabelLen)
	case !qualifiedNameRegex.MatchString(v):
		return "it must be empty or consist of letters, digits, '-', '_' or '.', and start and end with a letter or digit"
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkLabels checks label keys and values (k8s rules).
func (p *problems) checkLabels(field string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		if why := qualifiedNameProblem(k); why != "" {
			p.add(field, "key %s is not a valid label key: %s", quote(k), why)
		}
		if why := labelValueProblem(labels[k]); why != "" {
			p.add(key(field, k), "%s is not a valid label value: %s", quote(labels[k]), why)
		}
	}
}

// checkAnnotations checks annotation keys and the total size.
func (p *problems) checkAnnotations(field string, ann map[string]string) {
	size := 0
	for _, k := range sortedKeys(ann) {
		if why := qualifiedNameProblem(strings.ToLower(k)); why != "" {
			p.add(field, "key %s is not a valid annotation key: %s", quote(k), why)
		}
		size += len(k) + len(ann[k])
	}
	if size > maxAnnotations {
		p.add(field, "annotations total %d bytes; at most %d are allowed", size, maxAnnotations)
	}
}

// checkSelector parses a label selector.
func (p *problems) checkSelector(field, s string) {
	if s == "" {
		return
	}
	if _, err := selector.Parse(s); err != nil {
		p.add(field, "%s is not a valid selector: %v", quote(s), err)
	}
}

// ParseNet reads a CIDR ("10.0.0.0/8", host bits allowed) or a single
// address ("10.0.0.1", taken as /32 or /128).
func ParseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s is not a CIDR", quote(s))
		}
		return pfx, nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s is not an IP address or CIDR", quote(s))
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("zone not allowed")
	}
	return a, nil
}

func ipVersion(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// checkNet checks a CIDR or address and returns its IP version (0 if bad).
// version 0 accepts both families.
func (p *problems) checkNet(field, s string, version int) int {
	pfx, err := ParseNet(s)
	if err != nil {
		p.add(field, "%v", err)
		return 0
	}
	v := ipVersion(pfx.Addr())
	if version != 0 && v != version {
		p.add(field, "%s is not an IPv%d network", quote(s), version)
		return 0
	}
	return v
}

// checkIP checks a single address of the given version (0: either).
func (p *problems) checkIP(field, s string, version int) (netip.Addr, bool) {
	a, err := parseAddr(s)
	if err != nil {
		p.add(field, "%s is not an IP address", quote(s))
		return netip.Addr{}, false
	}
	if version != 0 && ipVersion(a) != version {
		p.add(field, "%s is not an IPv%d address", quote(s), version)
		return netip.Addr{}, false
	}
	return a, true
}

func (p *problems) checkOptionalIP(field, s string, version int) {
	if s != "" {
		p.checkIP(field, s, version)
	}
}

func (p *problems) checkMAC(field, s string) {
	if _, err := net.ParseMAC(s); err != nil {
		p.add(field, "%s is not a MAC address", quote(s))
	}
}

// oneOf checks that s is one of the allowed values (exact spelling).
func (p *problems) oneOf(field, s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	p.add(field, "%s is not allowed; use %s", quote(s), orList(allowed))
	return false
}

func orList(vals []string) string {
	switch len(vals) {
	case 0:
		return ""
	case 1:
		return vals[0]
	}
	return strings.Join(vals[:len(vals)-1], ", ") + " or " + vals[len(vals)-1]
}

func (p *problems) checkInterfaceName(field, s string) {
	if !interfaceRegex.MatchString(s) {
		p.add(field, "%s is not an interface name: use 1 to 15 letters, digits, '_', '.' or '-'", quote(s))
	}
}

// isK8sPortName reports whether s is a valid named port (k8s IANA_SVC_NAME):
// at most 15 lowercase letters, digits and single hyphens, with a letter,
// not starting or ending with '-'.
func isK8sPortName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return letter
}

// checkPassword checks a BGP password source.
func (p *problems) checkPassword(field string, pw *BGPPassword) {
	n := 0
	if pw.SecretKeyRef != nil {
		n++
		if pw.SecretKeyRef.Name == "" {
			p.add(at(at(field, "secretKeyRef"), "name"), "is required")
		}
		if pw.SecretKeyRef.Key == "" {
			p.add(at(at(field, "secretKeyRef"), "key"), "is required")
		}
	}
	if pw.Value != "" {
		n++
		switch {
		case pw.Value == RedactedValue:
			p.add(at(field, "value"), "%s is the placeholder output shows instead of a secret; give the real password", quote(RedactedValue))
		case len(pw.Value) > 80:
			p.add(at(field, "value"), "the password is %d characters long; BGP passwords are at most 80", len(pw.Value))
		}
	}
	if pw.File != "" {
		n++
		if !strings.HasPrefix(pw.File, "/") {
			p.add(at(field, "file"), "%s is not an absolute path", quote(pw.File))
		}
	}
	if n != 1 {
		p.add(field, "set exactly one of secretKeyRef, value or file (%d are set)", n)
	}
}

func (p *problems) checkDuration(field string, d *Duration, positive bool) {
	if d == nil {
		return
	}
	if d.Duration < 0 || positive && d.Duration == 0 {
		what := "must not be negative"
		if positive {
			what = "must be positive"
		}
		p.add(field, "%s %s", d.Duration, what)
	}
}
