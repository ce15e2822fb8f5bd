package cni

import (
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

func ipnet(s string) net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return *n
}

func TestMergePrevResult(t *testing.T) {
	own := func() *types100.Result {
		return &types100.Result{
			CNIVersion: WireVersion,
			Interfaces: []*types100.Interface{{Name: "tbyhost"}, {Name: "eth0", Sandbox: "/ns"}},
			IPs:        []*types100.IPConfig{{Interface: types100.Int(1), Address: ipnet("10.65.0.1/32")}},
			Routes:     []*types.Route{{Dst: ipnet("0.0.0.0/0")}},
			DNS:        types.DNS{Nameservers: []string{"10.0.0.53", "10.0.0.54"}, Domain: "tabby", Search: []string{"a"}},
		}
	}
	for _, tc := range []struct {
		name string
		prev *types100.Result
		want *types100.Result
	}{
		{name: "no prevResult", prev: nil, want: own()},
		{
			name: "interfaces, addresses, routes and DNS kept",
			prev: &types100.Result{
				CNIVersion: "1.0.0",
				Interfaces: []*types100.Interface{{Name: "br0"}, {Name: "veth1"}, {Name: "net1", Sandbox: "/ns"}},
				IPs: []*types100.IPConfig{
					{Interface: types100.Int(2), Address: ipnet("192.0.2.10/24")},
					{Address: ipnet("192.0.2.11/24")}, // no interface
				},
				Routes: []*types.Route{{Dst: ipnet("198.51.100.0/24")}, {Dst: ipnet("0.0.0.0/0")}},
				DNS:    types.DNS{Nameservers: []string{"10.0.0.54"}, Domain: "prev", Search: []string{"b"}},
			},
			want: &types100.Result{
				CNIVersion: WireVersion,
				Interfaces: []*types100.Interface{{Name: "br0"}, {Name: "veth1"}, {Name: "net1", Sandbox: "/ns"}, {Name: "tbyhost"}, {Name: "eth0", Sandbox: "/ns"}},
				IPs: []*types100.IPConfig{
					{Interface: types100.Int(2), Address: ipnet("192.0.2.10/24")},
					{Address: ipnet("192.0.2.11/24")},
					{Interface: types100.Int(4), Address: ipnet("10.65.0.1/32")},
				},
				Routes: []*types.Route{{Dst: ipnet("198.51.100.0/24")}, {Dst: ipnet("0.0.0.0/0")}},
				DNS:    types.DNS{Nameservers: []string{"10.0.0.54", "10.0.0.53"}, Domain: "prev", Search: []string{"b", "a"}},
			},
		},
		{
			name: "addresses only (an IPAM-only earlier plugin)",
			prev: &types100.Result{CNIVersion: "1.1.0", IPs: []*types100.IPConfig{{Address: ipnet("192.0.2.10/24")}}},
			want: &types100.Result{
				CNIVersion: WireVersion,
				Interfaces: []*types100.Interface{{Name: "tbyhost"}, {Name: "eth0", Sandbox: "/ns"}},
				IPs:        []*types100.IPConfig{{Address: ipnet("192.0.2.10/24")}, {Interface: types100.Int(1), Address: ipnet("10.65.0.1/32")}},
				Routes:     []*types.Route{{Dst: ipnet("0.0.0.0/0")}},
				DNS:        types.DNS{Nameservers: []string{"10.0.0.53", "10.0.0.54"}, Domain: "tabby", Search: []string{"a"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := own()
			got := MergePrevResult(tc.prev, o)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("merged result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(own(), o); diff != "" {
				t.Errorf("own result was modified (-want +got):\n%s", diff)
			}
		})
	}
}
