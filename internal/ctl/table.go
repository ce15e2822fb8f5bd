package ctl

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/tabbynet/tabby/internal/api"
)

// column is one column of `tabby get` table output.
type column struct {
	title string
	wide  bool // only with -o wide
	value func(api.Resource) string
}

// columns returns the table columns of a kind, after NAME (and NAMESPACE).
func columns(k api.KindInfo) []column {
	switch k.Kind {
	case "Node":
		return []column{
			{title: "ASN", value: func(r api.Resource) string {
				if b := r.(*api.Node).Spec.BGP; b != nil && b.ASNumber != nil {
					return b.ASNumber.String()
				}
				return "(64512)"
			}},
			{title: "IPV4", value: func(r api.Resource) string {
				if b := r.(*api.Node).Spec.BGP; b != nil {
					return b.IPv4Address
				}
				return ""
			}},
			{title: "IPV6", wide: true, value: func(r api.Resource) string {
				if b := r.(*api.Node).Spec.BGP; b != nil {
					return b.IPv6Address
				}
				return ""
			}},
		}
	case "IPPool":
		return []column{
			{title: "CIDR", value: func(r api.Resource) string { return r.(*api.IPPool).Spec.CIDR }},
			{title: "SELECTOR", value: func(r api.Resource) string { return r.(*api.IPPool).Spec.NodeSelector }},
			{title: "NAT", wide: true, value: func(r api.Resource) string { return strconv.FormatBool(r.(*api.IPPool).Spec.NATOutgoing) }},
			{title: "IPIPMODE", wide: true, value: func(r api.Resource) string { return r.(*api.IPPool).Spec.IPIPMode }},
			{title: "VXLANMODE", wide: true, value: func(r api.Resource) string { return r.(*api.IPPool).Spec.VXLANMode }},
			{title: "DISABLED", wide: true, value: func(r api.Resource) string { return strconv.FormatBool(r.(*api.IPPool).Spec.Disabled) }},
		}
	case "WorkloadEndpoint":
		return []column{
			{title: "WORKLOAD", value: func(r api.Resource) string { return r.(*api.WorkloadEndpoint).Spec.Workload }},
			{title: "NODE", value: func(r api.Resource) string { return r.(*api.WorkloadEndpoint).Spec.Node }},
			{title: "NETWORKS", value: func(r api.Resource) string { return strings.Join(r.(*api.WorkloadEndpoint).Spec.IPNetworks, ",") }},
			{title: "INTERFACE", value: func(r api.Resource) string { return r.(*api.WorkloadEndpoint).Spec.InterfaceName }},
			{title: "PROFILES", wide: true, value: func(r api.Resource) string { return strings.Join(r.(*api.WorkloadEndpoint).Spec.Profiles, ",") }},
			{title: "LABELS", wide: true, value: func(r api.Resource) string { return labelString(r.GetObjectMeta().Labels) }},
		}
	case "HostEndpoint":
		return []column{
			{title: "NODE", value: func(r api.Resource) string { return r.(*api.HostEndpoint).Spec.Node }},
			{title: "INTERFACE", value: func(r api.Resource) string { return r.(*api.HostEndpoint).Spec.InterfaceName }},
			{title: "IPS", wide: true, value: func(r api.Resource) string { return strings.Join(r.(*api.HostEndpoint).Spec.ExpectedIPs, ",") }},
		}
	case "Tier":
		return []column{
			{title: "ORDER", value: func(r api.Resource) string { return orderString(r.(*api.Tier).Spec.Order) }},
			{title: "DEFAULTACTION", value: func(r api.Resource) string { return r.(*api.Tier).Spec.DefaultAction }},
		}
	case "NetworkPolicy":
		return []column{
			{title: "TIER", value: func(r api.Resource) string { return tierString(r.(*api.NetworkPolicy).Spec.Tier) }},
			{title: "ORDER", value: func(r api.Resource) string { return orderString(r.(*api.NetworkPolicy).Spec.Order) }},
			{title: "SELECTOR", wide: true, value: func(r api.Resource) string { return r.(*api.NetworkPolicy).Spec.Selector }},
		}
	case "GlobalNetworkPolicy":
		return []column{
			{title: "TIER", value: func(r api.Resource) string { return tierString(r.(*api.GlobalNetworkPolicy).Spec.Tier) }},
			{title: "ORDER", value: func(r api.Resource) string { return orderString(r.(*api.GlobalNetworkPolicy).Spec.Order) }},
			{title: "SELECTOR", wide: true, value: func(r api.Resource) string { return r.(*api.GlobalNetworkPolicy).Spec.Selector }},
		}
	case "NetworkSet", "GlobalNetworkSet":
		return []column{
			{title: "NETS", wide: true, value: func(r api.Resource) string {
				switch s := r.(type) {
				case *api.NetworkSet:
					return strings.Join(s.Spec.Nets, ",")
				case *api.GlobalNetworkSet:
					return strings.Join(s.Spec.Nets, ",")
				}
				return ""
			}},
		}
	case "Namespace":
		return []column{
			{title: "LABELS", value: func(r api.Resource) string { return labelString(r.GetObjectMeta().Labels) }},
		}
	case "BGPPeer":
		return []column{
			{title: "PEERIP", value: func(r api.Resource) string { return r.(*api.BGPPeer).Spec.PeerIP }},
			{title: "NODE", value: func(r api.Resource) string {
				s := r.(*api.BGPPeer).Spec
				switch {
				case s.Node != "":
					return s.Node
				case s.NodeSelector != "":
					return s.NodeSelector
				}
				return "(global)"
			}},
			{title: "ASN", value: func(r api.Resource) string { return r.(*api.BGPPeer).Spec.ASNumber.String() }},
		}
	}
	return nil
}

func tierString(t string) string {
	if t == "" {
		return api.DefaultTierName
	}
	return t
}

func orderString(o *float64) string {
	if o == nil {
		return ""
	}
	return strconv.FormatFloat(*o, 'g', -1, 64)
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// printTable writes resources as an aligned table.
func printTable(w io.Writer, k api.KindInfo, rs []api.Resource, wide, showNS bool, extra ...column) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var cols []column
	for _, c := range append(columns(k), extra...) {
		if !c.wide || wide {
			cols = append(cols, c)
		}
	}
	showNS = showNS && k.Scope == api.Namespaced
	head := []string{}
	if showNS {
		head = append(head, "NAMESPACE")
	}
	head = append(head, "NAME")
	for _, c := range cols {
		head = append(head, c.title)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	row := make([]string, 0, len(head))
	for _, r := range rs {
		row = row[:0]
		if showNS {
			row = append(row, r.GetObjectMeta().Namespace)
		}
		row = append(row, r.GetObjectMeta().Name)
		for _, c := range cols {
			row = append(row, c.value(r))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}
