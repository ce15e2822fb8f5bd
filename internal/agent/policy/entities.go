package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
)

// Labels Calico adds to every endpoint (and Tabby to every network set) so
// selectors can match on them.
const (
	LabelNamespace      = "projectcalico.org/namespace"
	LabelOrchestrator   = "projectcalico.org/orchestrator"
	LabelServiceAccount = "projectcalico.org/serviceaccount"
	// LabelName is the label every namespace and service account carries
	// with its own name; namespaceSelector and serviceAccounts.selector
	// are evaluated against it.
	LabelName = "projectcalico.org/name"
)

// entity is anything a selector can match and that has addresses: a
// workload endpoint, a host endpoint, a network set or a global network set.
type entity struct {
	id        string // "WorkloadEndpoint default/x", for messages
	namespace string // "" for cluster-scoped entities
	labels    map[string]string
	nets      []netip.Prefix
	ports     []namedPort
	sa        string // service account (workload endpoints)

	// nsLabels are the labels of the entity's namespace, as a
	// namespaceSelector sees them; nil for cluster-scoped entities.
	nsLabels map[string]string
}

// namedPort is a named port of an endpoint.
type namedPort struct {
	name  string
	proto uint8
	port  uint16
}

// endpoint is a workload endpoint of this host, normalized.
type endpoint struct {
	Name, Namespace, IfName string
	Addrs                   []netip.Prefix
	Labels                  map[string]string
	NamespaceLabels         map[string]string // what a namespaceSelector sees
	Profiles                []string
	Ports                   []api.WorkloadEndpointPort
	ServiceAccount          string
}

// hostEndpoint is a host endpoint of this host, normalized.
type hostEndpoint struct {
	Name     string
	IfName   string // "*" for all interfaces
	Labels   map[string]string
	Profiles []string
}

func namespaceOf(m *api.ObjectMeta) string {
	if m.Namespace == "" {
		return api.DefaultNamespace
	}
	return m.Namespace
}

// effectiveLabels are an endpoint's labels as selectors see them: the
// labelsToApply of its profiles (in order, later wins), overridden by its
// own labels, plus the namespace, orchestrator and service account labels.
func (c *compiler) effectiveLabels(own map[string]string, profiles []string, ns, orch, sa string) map[string]string {
	l := make(map[string]string, len(own)+4)
	for _, p := range profiles {
		if pr, ok := c.profiles[p]; ok {
			maps.Copy(l, pr.Spec.LabelsToApply)
		}
	}
	maps.Copy(l, own)
	if ns != "" {
		l[LabelNamespace] = ns
	}
	if orch != "" {
		l[LabelOrchestrator] = orch
	}
	if sa != "" {
		l[LabelServiceAccount] = sa
	}
	return l
}

// namespaceLabels are the labels a namespaceSelector sees for namespace
// ns: its Namespace object's labels plus its name labels. This is the one
// place namespace labels are resolved.
func (c *compiler) namespaceLabels(ns string) map[string]string {
	if c.nsLabels == nil {
		c.nsLabels = map[string]map[string]string{}
		for _, n := range c.state.Namespaces {
			if n != nil {
				c.nsLabels[n.Name] = api.NamespaceLabels(n.Name, n)
			}
		}
	}
	l, ok := c.nsLabels[ns]
	if !ok {
		l = api.NamespaceLabels(ns, nil)
		c.nsLabels[ns] = l
	}
	return l
}

// parseNet reads a CIDR or a bare address.
func parseNet(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseNets(field string, in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		p, err := parseNet(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseNetsSkipping reads a list of networks; an entry that is not one is
// left out with a warning (it names no address, so nothing can match it).
func (c *compiler) parseNetsSkipping(id, field string, in []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		p, err := parseNet(s)
		if err != nil {
			c.warnf("%s: %s[%d]: %v; ignored", id, field, i, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// namedPorts reads the named ports of an endpoint; one with a bad protocol
// is left out with a warning.
func (c *compiler) namedPorts(id string, in []api.WorkloadEndpointPort) []namedPort {
	var ports []namedPort
	for j, p := range in {
		proto, err := protoNumber(fmt.Sprintf("spec.ports[%d].protocol", j), p.Protocol, 6)
		if err != nil {
			c.warnf("%s: %v; the port is ignored", id, err)
			continue
		}
		if p.Name != "" {
			ports = append(ports, namedPort{name: p.Name, proto: proto, port: p.Port})
		}
	}
	return ports
}

func protoNumber(field string, p api.Protocol, dflt uint8) (uint8, error) {
	if p == "" {
		return dflt, nil
	}
	n, ok := p.Number()
	if !ok {
		return 0, fmt.Errorf("%s: %q is not a protocol name or number (1-255)", field, p)
	}
	return n, nil
}

// loadEntities normalizes every endpoint and set of the cluster.
func (c *compiler) loadEntities() error {
	s := c.state
	for i, w := range s.Endpoints {
		if w == nil {
			return fmt.Errorf("endpoints[%d] is nil", i)
		}
		ent := c.workloadEntity(w)
		c.entities = append(c.entities, ent)
		id, ns, nets, labels, nsLabels := ent.id, ent.namespace, ent.nets, ent.labels, ent.nsLabels
		if w.Spec.Node != s.Node {
			continue
		}
		// A local endpoint that cannot be policed is left out: its
		// interface (if any) reaches the dispatch chains' drop, and an
		// address it cannot own is not one it may send from.
		if w.Spec.InterfaceName == "" {
			c.warnf("%s: spec.interfaceName is empty, but the endpoint is on this node; its traffic is dropped", id)
			continue
		}
		if len(w.Spec.InterfaceName) > 15 || strings.ContainsAny(w.Spec.InterfaceName, "/ \t\n\x00*") {
			c.warnf("%s: spec.interfaceName %q is not a Linux interface name; ignored", id, w.Spec.InterfaceName)
			continue
		}
		nets = slices.DeleteFunc(slices.Clone(nets), func(n netip.Prefix) bool {
			if !n.IsSingleIP() {
				c.warnf("%s: spec.ipNetworks: %s must be a single address (/32 or /128) on a local endpoint; the endpoint may not send from it", id, n)
			}
			return !n.IsSingleIP()
		})
		c.local = append(c.local, &endpoint{
			Name: w.Name, Namespace: ns, IfName: w.Spec.InterfaceName, Addrs: nets,
			Labels: labels, NamespaceLabels: nsLabels, Profiles: w.Spec.Profiles, Ports: w.Spec.Ports, ServiceAccount: w.Spec.ServiceAccountName,
		})
	}
	c.dropSharedInterfaces()

	for i, h := range s.HostEndpoints {
		if h == nil {
			return fmt.Errorf("hostEndpoints[%d] is nil", i)
		}
		id := "HostEndpoint " + h.Name
		nets := c.parseNetsSkipping(id, "spec.expectedIPs", h.Spec.ExpectedIPs)
		hp := make([]api.WorkloadEndpointPort, len(h.Spec.Ports))
		for j, p := range h.Spec.Ports {
			hp[j] = api.WorkloadEndpointPort{Name: p.Name, Protocol: p.Protocol, Port: p.Port}
		}
		ports := c.namedPorts(id, hp)
		labels := c.effectiveLabels(h.Labels, h.Spec.Profiles, "", "", "")
		c.entities = append(c.entities, &entity{id: id, labels: labels, nets: nets, ports: ports})
		if h.Spec.Node != s.Node {
			continue
		}
		if h.Spec.InterfaceName == "" {
			c.warnf("%s: spec.interfaceName is empty; host endpoints found by expectedIPs alone are not supported, so it protects no interface", id)
			continue
		}
		c.hostEPs = append(c.hostEPs, &hostEndpoint{Name: h.Name, IfName: h.Spec.InterfaceName, Labels: labels, Profiles: h.Spec.Profiles})
	}
	slices.SortFunc(c.hostEPs, func(a, b *hostEndpoint) int { return strings.Compare(a.Name, b.Name) })
	seen := map[string]string{}
	c.hostEPs = slices.DeleteFunc(c.hostEPs, func(h *hostEndpoint) bool {
		if other, ok := seen[h.IfName]; ok {
			c.warnf("HostEndpoints %s and %s both claim interface %q; %s is used", other, h.Name, h.IfName, other)
			return true
		}
		seen[h.IfName] = h.Name
		return false
	})

	for i, n := range s.NetworkSets {
		if n == nil {
			return fmt.Errorf("networkSets[%d] is nil", i)
		}
		c.entities = append(c.entities, c.networkSetEntity(n))
	}
	for i, n := range s.GlobalNetworkSets {
		if n == nil {
			return fmt.Errorf("globalNetworkSets[%d] is nil", i)
		}
		c.entities = append(c.entities, c.globalNetworkSetEntity(n))
	}
	return nil
}

// entityCache carries the entities of one full compile to the next (the
// incremental Engine keeps it): an object the datastore has not replaced
// (the same pointer) whose profiles and namespaces are unchanged gives the
// same entity, and the same warnings. Most of a full compile of a large
// cluster was building entities for endpoints that had not changed.
type entityCache struct {
	profiles   []*api.Profile
	namespaces []*api.Namespace
	prev, next map[*api.WorkloadEndpoint]cachedEntity
}

type cachedEntity struct {
	ent      *entity
	warnings []string
}

// start readies the cache for a compile of s: entities built with other
// profiles or namespaces are dropped.
func (ec *entityCache) start(s *State) {
	if !slices.Equal(ec.profiles, s.Profiles) || !slices.Equal(ec.namespaces, s.Namespaces) {
		ec.prev = nil
	} else if ec.next != nil {
		ec.prev = ec.next
	}
	ec.profiles, ec.namespaces = slices.Clone(s.Profiles), slices.Clone(s.Namespaces)
	ec.next = make(map[*api.WorkloadEndpoint]cachedEntity, len(s.Endpoints))
}

// workloadEntity is what selectors see of a workload endpoint.
func (c *compiler) workloadEntity(w *api.WorkloadEndpoint) *entity {
	ec := c.entCache
	if ec == nil {
		return c.buildWorkloadEntity(w)
	}
	if ce, ok := ec.prev[w]; ok {
		c.warnings = append(c.warnings, ce.warnings...)
		ec.next[w] = ce
		return ce.ent
	}
	n := len(c.warnings)
	ent := c.buildWorkloadEntity(w)
	ec.next[w] = cachedEntity{ent: ent, warnings: slices.Clone(c.warnings[n:])}
	return ent
}

func (c *compiler) buildWorkloadEntity(w *api.WorkloadEndpoint) *entity {
	ns := namespaceOf(&w.ObjectMeta)
	id := "WorkloadEndpoint " + ns + "/" + w.Name
	return &entity{
		id: id, namespace: ns, nsLabels: c.namespaceLabels(ns),
		labels: c.effectiveLabels(w.Labels, w.Spec.Profiles, ns, w.Spec.Orchestrator, w.Spec.ServiceAccountName),
		nets:   c.parseNetsSkipping(id, "spec.ipNetworks", w.Spec.IPNetworks),
		ports:  c.namedPorts(id, w.Spec.Ports),
		sa:     w.Spec.ServiceAccountName,
	}
}

// networkSetEntity is what selectors see of a NetworkSet: its labels and
// its namespace's.
func (c *compiler) networkSetEntity(n *api.NetworkSet) *entity {
	ns := namespaceOf(&n.ObjectMeta)
	id := "NetworkSet " + ns + "/" + n.Name
	labels := maps.Clone(n.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelNamespace] = ns
	return &entity{id: id, namespace: ns, nsLabels: c.namespaceLabels(ns), labels: labels, nets: c.parseNetsSkipping(id, "spec.nets", n.Spec.Nets)}
}

// globalNetworkSetEntity is what selectors see of a GlobalNetworkSet.
func (c *compiler) globalNetworkSetEntity(n *api.GlobalNetworkSet) *entity {
	id := "GlobalNetworkSet " + n.Name
	return &entity{id: id, labels: n.Labels, nets: c.parseNetsSkipping(id, "spec.nets", n.Spec.Nets)}
}

// dropSharedInterfaces sorts the local endpoints by interface and leaves
// out every endpoint whose interface another one also claims: which of
// them owns it cannot be known, so its traffic is dropped.
func (c *compiler) dropSharedInterfaces() {
	slices.SortFunc(c.local, func(a, b *endpoint) int { return strings.Compare(a.IfName, b.IfName) })
	count := map[string]int{}
	for _, e := range c.local {
		count[e.IfName]++
	}
	c.local = slices.DeleteFunc(c.local, func(e *endpoint) bool {
		if count[e.IfName] > 1 {
			c.warnf("WorkloadEndpoint %s/%s: interface %q is claimed by %d endpoints on this node; its traffic is dropped", e.Namespace, e.Name, e.IfName, count[e.IfName])
			return true
		}
		return false
	})
}

// scope says which entities a rule selector may match.
type scope uint8

const (
	scopeAll       scope = iota // every entity (global policies and profiles)
	scopeNamespace              // entities of one namespace (namespaced policies)
	scopeNSSel                  // namespaced entities whose namespace matches a selector
	scopeGlobal                 // cluster-scoped entities only: namespaceSelector global()
)

// predicate decides which entities belong to a selector set. Its key names
// the set: equal predicates share one set.
type predicate struct {
	scope     scope
	namespace string
	nsSel     *selector.Selector
	sel       *selector.Selector // nil: any
	saNames   []string           // sorted; empty: any
	saSel     *selector.Selector // nil: any
	hasSA     bool               // serviceAccounts given: only workload endpoints with one match
	key       string
	hash      string // shortHash(key): names its sets
}

func (p *predicate) computeKey() {
	var b strings.Builder
	switch p.scope {
	case scopeAll:
		b.WriteString("all")
	case scopeNamespace:
		b.WriteString("ns=" + p.namespace)
	case scopeNSSel:
		b.WriteString("nssel=" + p.nsSel.String())
	case scopeGlobal:
		b.WriteString("global")
	}
	if p.sel != nil {
		b.WriteString("|sel=" + p.sel.String())
	}
	if p.hasSA {
		b.WriteString("|sa=" + strings.Join(p.saNames, ","))
		if p.saSel != nil {
			b.WriteString("|sasel=" + p.saSel.String())
		}
	}
	p.key = b.String()
	p.hash = shortHash(p.key)
}

// describe is the human-readable form used as the set comment.
func (p *predicate) describe() string {
	var parts []string
	if p.sel != nil {
		parts = append(parts, "selector "+p.sel.String())
	}
	switch p.scope {
	case scopeNamespace:
		parts = append(parts, "namespace "+p.namespace)
	case scopeNSSel:
		parts = append(parts, "namespaceSelector "+p.nsSel.String())
	case scopeGlobal:
		parts = append(parts, "cluster-scoped")
	}
	if p.hasSA {
		if len(p.saNames) > 0 {
			parts = append(parts, "serviceAccounts "+strings.Join(p.saNames, ","))
		}
		if p.saSel != nil {
			parts = append(parts, "serviceAccountSelector "+p.saSel.String())
		}
	}
	if len(parts) == 0 {
		return "all endpoints and network sets"
	}
	return strings.Join(parts, "; ")
}

func (p *predicate) matches(e *entity) bool {
	switch p.scope {
	case scopeNamespace:
		if e.namespace != p.namespace {
			return false
		}
	case scopeNSSel:
		if e.namespace == "" || !p.nsSel.Evaluate(e.nsLabels) {
			return false
		}
	case scopeGlobal:
		if e.namespace != "" {
			return false
		}
	}
	if p.hasSA {
		if e.sa == "" {
			return false
		}
		if len(p.saNames) > 0 {
			if _, ok := slices.BinarySearch(p.saNames, e.sa); !ok {
				return false
			}
		}
		if p.saSel != nil && !p.saSel.Evaluate(map[string]string{LabelName: e.sa}) {
			return false
		}
	}
	return p.sel == nil || p.sel.Evaluate(e.labels)
}

// parseSelector parses (and caches) a selector; field names it in errors.
func (c *compiler) parseSelector(field, s string) (*selector.Selector, error) {
	if sel, ok := c.selectors[s]; ok {
		return sel, nil
	}
	sel, err := selector.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q: %w", field, s, err)
	}
	c.selectors[s] = sel
	return sel, nil
}
