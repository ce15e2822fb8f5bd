package cni

import (
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// MergePrevResult is the result a chained plugin prints (CNI spec,
// "Chained plugins"): everything an earlier plugin reported in prev —
// interfaces, addresses, routes, DNS — followed by what Tabby added in
// own. Tabby's interfaces come after prev's, so own's ips[].interface
// indexes are shifted by len(prev.Interfaces) to keep pointing at
// Tabby's interfaces; prev's indexes are unchanged. Identical routes
// and DNS entries appear once. prev and own are not modified; with no
// prev the result is own.
func MergePrevResult(prev, own *types100.Result) *types100.Result {
	if prev == nil {
		return own
	}
	out := &types100.Result{CNIVersion: own.CNIVersion}
	offset := len(prev.Interfaces)
	for _, ifc := range prev.Interfaces {
		out.Interfaces = append(out.Interfaces, ifc.Copy())
	}
	for _, ifc := range own.Interfaces {
		out.Interfaces = append(out.Interfaces, ifc.Copy())
	}
	for _, ip := range prev.IPs {
		out.IPs = append(out.IPs, ip.Copy())
	}
	for _, ip := range own.IPs {
		c := ip.Copy()
		if c.Interface != nil {
			c.Interface = types100.Int(*c.Interface + offset)
		}
		out.IPs = append(out.IPs, c)
	}
	for _, r := range append(slices.Clone(prev.Routes), own.Routes...) {
		if !slices.ContainsFunc(out.Routes, func(o *types.Route) bool { return o.String() == r.String() }) {
			out.Routes = append(out.Routes, r.Copy())
		}
	}
	out.DNS = mergeDNS(prev.DNS, own.DNS)
	return out
}

// mergeDNS keeps prev's settings and adds own's that prev lacks; prev's
// domain wins when both set one.
func mergeDNS(prev, own types.DNS) types.DNS {
	out := *prev.Copy()
	if out.Domain == "" {
		out.Domain = own.Domain
	}
	out.Nameservers = appendMissing(out.Nameservers, own.Nameservers)
	out.Search = appendMissing(out.Search, own.Search)
	out.Options = appendMissing(out.Options, own.Options)
	return out
}

func appendMissing(to, from []string) []string {
	for _, s := range from {
		if !slices.Contains(to, s) {
			to = append(to, s)
		}
	}
	return to
}
