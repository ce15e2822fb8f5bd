package agent

import (
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/ipam"
)

// requestFamilies sets how many addresses of each family an ADD (or the
// STATUS that plans one) asks for, from the network config's ipam section
// (nil: the defaults):
//
//   - assign_ipv4 / assign_ipv6 "true" or "false" decide;
//   - unset, the family is asked for when ipv4_pools / ipv6_pools name
//     pools, or when some pool of the family can serve a workload on this
//     node (the agent's watched pools and Node labels: no datastore read).
//
// So a dual-stack cluster gives every container both families, an
// IPv6-only one IPv6 only, without a per-network setting. When neither
// family would be asked for, the one left unset is asked for anyway, so
// that IPAM's error names the missing pool. Static addresses (IP, ips)
// take their family's place in IPAM itself.
func (a *Agent) requestFamilies(ipc *cni.IPAMConf, r *ipam.Request) {
	if ipc == nil {
		ipc = &cni.IPAMConf{}
	}
	var labels map[string]string
	if n, ok := a.cache.get("Node", "", a.cfg.Node); ok {
		labels = n.GetObjectMeta().Labels
	}
	has4, has6 := ipam.UsableFamilies(listOf[*api.IPPool](a.cache, "IPPool"), a.cfg.Node, labels)
	want4 := wantFamily(ipc.AssignIPv4, len(ipc.IPv4Pools) > 0 || has4)
	want6 := wantFamily(ipc.AssignIPv6, len(ipc.IPv6Pools) > 0 || has6)
	if !want4 && !want6 {
		switch {
		case ipc.AssignIPv4 == nil:
			want4 = true
		case ipc.AssignIPv6 == nil:
			want6 = true
		}
	}
	r.IPv4, r.Pools4, r.IPv6, r.Pools6 = 0, nil, 0, nil
	if want4 {
		r.IPv4, r.Pools4 = 1, ipc.IPv4Pools
	}
	if want6 {
		r.IPv6, r.Pools6 = 1, ipc.IPv6Pools
	}
}

// wantFamily is an assign_ipvN setting, or dflt when it is unset.
func wantFamily(set *cni.Bool, dflt bool) bool {
	if set == nil {
		return dflt
	}
	return set.Value
}
