package records

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
)

// endpointTask turns a WorkloadEndpoint with spec.mesos into the task it
// runs, so that the datastore alone gives the Mesos-DNS and DC/OS names.
// The task name is spec.mesos.taskName, or the Marathon app path reversed
// and dot-joined; the agent is the endpoint's node.
func endpointTask(ep *api.WorkloadEndpoint, nodeIPs map[string][]netip.Addr) (*task, bool) {
	m := ep.Spec.Mesos
	if m == nil {
		return nil, false
	}
	name := m.TaskName
	if name == "" {
		name = AppTaskName(m.App)
	}
	if name == "" {
		return nil, false
	}
	fw := cmp.Or(m.Framework, DefaultFramework)
	id := cmp.Or(m.TaskID, ep.Spec.ContainerID, endpointKey(ep))
	ips := endpointIPs(ep)
	agent := nodeIPs[ep.Spec.Node]
	t := &task{
		framework:     fw,
		id:            id,
		name:          name,
		discoveryName: name, // Marathon sets DiscoveryInfo.name to the task name
		hasDiscovery:  true,
		agentID:       cmp.Or(m.AgentID, ep.Spec.Node),
		agentIPs:      agent,
		sourceIPs:     map[string][]netip.Addr{SourceNetinfo: ips, SourceHost: agent},
		containerIPs:  ips,
		ptrIPs:        ips,
	}
	for _, p := range ep.Spec.Ports {
		t.discoveryPorts = append(t.discoveryPorts, discoveryPort{number: p.Port, protocol: strings.ToLower(string(p.Protocol)), name: p.Name})
		if p.HostPort != 0 {
			t.hostPorts = append(t.hostPorts, p.HostPort)
			t.hostPortMapped = true
		}
	}
	return t, true
}

// AppTaskName is the Mesos task name Marathon gives an app:
// "/outergroup/subgroup/myapp" → "myapp.subgroup.outergroup".
func AppTaskName(app string) string {
	var parts []string
	for _, p := range strings.Split(app, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

// endpointRecords gives an endpoint without spec.mesos the name
// <workload>.<namespace>.<domain> (all IPs of all endpoints of the
// workload) and each of its IPs a PTR record to that name.
func (b *builder) endpointRecords(ep *api.WorkloadEndpoint) {
	wl := b.label(ep.Spec.Workload)
	if wl == "" {
		wl = b.label(ep.Name)
	}
	ns := b.label(cmp.Or(ep.Namespace, api.DefaultNamespace))
	if wl == "" || ns == "" {
		b.warnf("endpoint %s: workload %q in namespace %q gives no DNS name", endpointKey(ep), ep.Spec.Workload, ep.Namespace)
		return
	}
	name := wl + "." + ns + "." + b.cfg.Domain + "."
	for _, ip := range endpointIPs(ep) {
		b.addIP(name, b.cfg.TTL, ip)
		b.addPTR(ip, name)
	}
}

func endpointKey(ep *api.WorkloadEndpoint) string {
	return cmp.Or(ep.Namespace, api.DefaultNamespace) + "/" + ep.Name
}

// endpointIPs are the addresses of spec.ipNetworks ("10.0.0.5/32" or a bare
// address), without prefix.
func endpointIPs(ep *api.WorkloadEndpoint) []netip.Addr {
	var out []netip.Addr
	for _, n := range ep.Spec.IPNetworks {
		if ip, ok := parseAddr(n); ok {
			out = append(out, ip)
		}
	}
	return out
}

// parseAddr reads "10.0.0.1/24" or "10.0.0.1".
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), true
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		return ip.Unmap(), true
	}
	return netip.Addr{}, false
}

// nodeAddrs maps node names to their agent IPs: spec.bgp.ipv4Address and
// ipv6Address without prefix, else the first IPv4 and IPv6 of
// spec.addresses.
func nodeAddrs(nodes []*api.Node) map[string][]netip.Addr {
	out := make(map[string][]netip.Addr, len(nodes))
	for _, n := range nodes {
		var ips []netip.Addr
		if bgp := n.Spec.BGP; bgp != nil {
			for _, s := range []string{bgp.IPv4Address, bgp.IPv6Address} {
				if ip, ok := parseAddr(s); ok {
					ips = append(ips, ip)
				}
			}
		}
		if len(ips) == 0 {
			var v4, v6 netip.Addr
			for _, a := range n.Spec.Addresses {
				ip, ok := parseAddr(a.Address)
				switch {
				case !ok:
				case ip.Is4() && !v4.IsValid():
					v4 = ip
				case ip.Is6() && !v6.IsValid():
					v6 = ip
				}
			}
			for _, ip := range []netip.Addr{v4, v6} {
				if ip.IsValid() {
					ips = append(ips, ip)
				}
			}
		}
		out[n.Name] = ips
	}
	return out
}

func sortedEndpoints(eps []*api.WorkloadEndpoint) []*api.WorkloadEndpoint {
	out := slices.Clone(eps)
	slices.SortFunc(out, func(a, b *api.WorkloadEndpoint) int {
		return cmp.Or(strings.Compare(cmp.Or(a.Namespace, api.DefaultNamespace), cmp.Or(b.Namespace, api.DefaultNamespace)), strings.Compare(a.Name, b.Name))
	})
	return out
}

func sortedNodes(nodes []*api.Node) []*api.Node {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b *api.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}
