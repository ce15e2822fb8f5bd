package policytest

import (
	"fmt"
	"maps"
	"slices"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

// RemoteChange applies one random change of a remote workload endpoint, a
// NetworkSet or a GlobalNetworkSet to s and returns it as the datastore
// delivers it: objects are replaced, never modified, so Old is what s held
// before. Addresses are sometimes taken from another endpoint (two
// entities holding one address) and network sets sometimes hold prefixes
// containing endpoint addresses: the cases where a set's element has more
// than one source.
func (g *Random) RemoteChange(s *policy.State) (policy.Change, string) {
	remote := func() (int, *api.WorkloadEndpoint) {
		var idx []int
		for i, w := range s.Endpoints {
			if w.Spec.Node != s.Node {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return -1, nil
		}
		i := pick(g.r, idx...)
		return i, s.Endpoints[i]
	}
	switch g.r.IntN(9) {
	case 0, 1:
		w := g.endpoint(false)
		s.Endpoints = append(s.Endpoints, w)
		return policy.Change{New: w}, "add remote endpoint " + w.Name
	case 2:
		if i, w := remote(); w != nil {
			s.Endpoints = slices.Delete(s.Endpoints, i, i+1)
			return policy.Change{Old: w}, "delete remote endpoint " + w.Name
		}
	case 3:
		if i, w := remote(); w != nil {
			n := cloneWEP(w)
			n.Labels = g.labels()
			if g.r.IntN(3) == 0 {
				n.Labels["trusted"] = ""
			}
			s.Endpoints[i] = n
			return policy.Change{Old: w, New: n}, "relabel remote endpoint " + w.Name
		}
	case 4:
		if i, w := remote(); w != nil {
			n := cloneWEP(w)
			if o := s.Endpoints[g.r.IntN(len(s.Endpoints))]; g.r.IntN(2) == 0 && o != w {
				n.Spec.IPNetworks = slices.Clone(o.Spec.IPNetworks)
			} else {
				n.Spec.IPNetworks = g.addrs()
			}
			s.Endpoints[i] = n
			return policy.Change{Old: w, New: n}, "readdress remote endpoint " + w.Name
		}
	case 5:
		if i, w := remote(); w != nil {
			n := cloneWEP(w)
			n.Spec.Ports = nil
			if g.r.IntN(2) == 0 {
				n.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: uint16(8000 + g.r.IntN(100))}}
			}
			s.Endpoints[i] = n
			return policy.Change{Old: w, New: n}, "change the named ports of remote endpoint " + w.Name
		}
	case 6:
		g.next++
		n := GNS(fmt.Sprintf("gns-%d", g.next), map[string]string{"trusted": ""},
			pick(g.r, "172.16.0.0/12", "10.65.0.0/24", "10.65.0.0/16", "2001:db8:1::/48", "fd00:65::/64"), fmt.Sprintf("198.18.%d.0/24", g.r.IntN(256)))
		s.GlobalNetworkSets = append(s.GlobalNetworkSets, n)
		return policy.Change{New: n}, "add global network set " + n.Name
	case 7:
		if len(s.GlobalNetworkSets) > 0 {
			i := g.r.IntN(len(s.GlobalNetworkSets))
			old := s.GlobalNetworkSets[i]
			if g.r.IntN(2) == 0 {
				s.GlobalNetworkSets = slices.Delete(s.GlobalNetworkSets, i, i+1)
				return policy.Change{Old: old}, "delete global network set " + old.Name
			}
			n := *old
			n.Spec.Nets = []string{pick(g.r, "10.65.0.0/24", "192.0.2.0/24", "10.65.0.9/32")}
			s.GlobalNetworkSets[i] = &n
			return policy.Change{Old: old, New: &n}, "change the nets of global network set " + old.Name
		}
	case 8:
		g.next++
		n := NS(pick(g.r, randNamespaces...), fmt.Sprintf("ns-%d", g.next), map[string]string{"app": pick(g.r, randApps...)},
			pick(g.r, "10.65.0.0/24", "192.0.2.0/25", "10.65.0.9/32"))
		s.NetworkSets = append(s.NetworkSets, n)
		return policy.Change{New: n}, "add network set " + n.Name
	}
	return g.RemoteChange(s)
}

func cloneWEP(w *api.WorkloadEndpoint) *api.WorkloadEndpoint {
	n := *w
	n.Labels = maps.Clone(w.Labels)
	n.Spec.IPNetworks = slices.Clone(w.Spec.IPNetworks)
	return &n
}

// remoteSelectors select only endpoints this generator never puts on the
// local node (no local endpoint has the label, or the namespace holds no
// local endpoint): policies an incremental engine can leave alone.
var remoteSelectors = []string{"app == 'batch'", "has(remote-only)", "app == 'web' && has(remote-only)"}

// PolicyChange applies one random change of a NetworkPolicy or
// GlobalNetworkPolicy to s (add, replace, delete), sometimes after
// labelling a remote endpoint remote-only, and returns the changes as the
// datastore delivers them. Half of the policies it writes select only
// remote endpoints (some of which it labels so), the rest what random
// policies select; now and then one does not compile (a bad selector), so
// the change must be compiled in full.
func (g *Random) PolicyChange(s *policy.State) ([]policy.Change, string) {
	sel := func() string {
		switch g.r.IntN(10) {
		case 0:
			return "app == 'web"
		case 1, 2, 3, 4, 5:
			return pick(g.r, remoteSelectors...)
		}
		return pick(g.r, randSelectors...)
	}
	// Label a remote endpoint so the remote selectors select something.
	var pre []policy.Change
	for i, w := range s.Endpoints {
		if w.Spec.Node != s.Node && g.r.IntN(4) == 0 {
			n := cloneWEP(w)
			n.Labels["remote-only"] = ""
			if g.r.IntN(2) == 0 {
				n.Labels["app"] = "batch"
			}
			s.Endpoints[i] = n
			pre = append(pre, policy.Change{Old: w, New: n})
			break
		}
	}
	switch g.r.IntN(6) {
	case 0, 1:
		np, _ := g.policy(false)
		np.Spec.Selector = sel()
		s.Policies = append(s.Policies, np)
		return append(pre, policy.Change{New: np}), "add policy " + np.Name + " selecting " + np.Spec.Selector
	case 2:
		_, gp := g.policy(true)
		gp.Spec.Selector = sel()
		s.GlobalPolicies = append(s.GlobalPolicies, gp)
		return append(pre, policy.Change{New: gp}), "add global policy " + gp.Name + " selecting " + gp.Spec.Selector
	case 3:
		if len(s.Policies) > 0 {
			i := g.r.IntN(len(s.Policies))
			old := s.Policies[i]
			n := *old
			n.Spec.Selector = sel()
			n.Spec.Egress = g.rules()
			s.Policies[i] = &n
			return append(pre, policy.Change{Old: old, New: &n}), "change policy " + old.Name + " to select " + n.Spec.Selector
		}
	case 4:
		if len(s.GlobalPolicies) > 0 {
			i := g.r.IntN(len(s.GlobalPolicies))
			old := s.GlobalPolicies[i]
			n := *old
			n.Spec.Ingress = g.rules()
			n.Spec.Order = Ptr(float64(g.r.IntN(5)))
			s.GlobalPolicies[i] = &n
			return append(pre, policy.Change{Old: old, New: &n}), "change global policy " + old.Name
		}
	case 5:
		if len(s.Policies) > 0 {
			i := g.r.IntN(len(s.Policies))
			old := s.Policies[i]
			s.Policies = slices.Delete(s.Policies, i, i+1)
			return append(pre, policy.Change{Old: old}), "delete policy " + old.Name
		}
	}
	more, what := g.PolicyChange(s)
	return append(pre, more...), what
}

// LocalAdd applies one random change of a local endpoint to s: most
// often a new endpoint that copies an existing local endpoint's
// namespace, labels and profiles (so it needs the same body) with an
// interface and addresses of its own; sometimes one with labels of its
// own, a copy of an existing interface name, or a host port; sometimes an
// existing local endpoint rewritten unchanged (the ADD's pending
// endpoint replaced by the one it wrote).
func (g *Random) LocalAdd(s *policy.State) (policy.Change, string) {
	var locals []int
	for i, w := range s.Endpoints {
		if w.Spec.Node == s.Node {
			locals = append(locals, i)
		}
	}
	if len(locals) == 0 {
		w := g.endpoint(true)
		s.Endpoints = append(s.Endpoints, w)
		return policy.Change{New: w}, "add local endpoint " + w.Name
	}
	i := pick(g.r, locals...)
	like := s.Endpoints[i]
	if g.r.IntN(6) == 0 {
		n := cloneWEP(like)
		s.Endpoints[i] = n
		return policy.Change{Old: like, New: n}, "rewrite local endpoint " + like.Name + " unchanged"
	}
	g.next++
	n := cloneWEP(like)
	n.Name = fmt.Sprintf("ep-%d", g.next)
	n.Spec.InterfaceName = fmt.Sprintf("tbyl%07d", g.next)
	n.Spec.IPNetworks = g.addrs()
	n.Spec.Ports = nil
	what := "add local endpoint " + n.Name + " like " + like.Name
	switch g.r.IntN(8) {
	case 0:
		n.Labels = g.labels()
		what += ", relabelled"
	case 1:
		n.Spec.InterfaceName = like.Spec.InterfaceName
		what += ", on its interface"
	case 2:
		n.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: 8080, HostPort: uint16(31000 + g.r.IntN(20))}}
		what += ", with a host port"
	case 3:
		n.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: uint16(8000 + g.r.IntN(100))}}
		what += ", with a named port"
	}
	s.Endpoints = append(s.Endpoints, n)
	return policy.Change{New: n}, what
}
