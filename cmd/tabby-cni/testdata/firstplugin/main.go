// Command firstplugin is a test CNI plugin that runs before tabby in a
// chain: ADD reports one sandbox interface with an address, a route and
// DNS settings (touching nothing), in the config's CNI version; CHECK,
// DEL, GC and STATUS succeed. The tabby-cni tests build it.
package main

import (
	"encoding/json"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

func main() {
	ok := func(*skel.CmdArgs) error { return nil }
	skel.PluginMainFuncs(skel.CNIFuncs{Add: add, Check: ok, Del: ok, GC: ok, Status: ok}, version.All, "firstplugin")
}

func add(args *skel.CmdArgs) error {
	var conf types.NetConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return err
	}
	_, routed, _ := net.ParseCIDR("198.51.100.0/24")
	res := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: "first0", Mac: "02:00:00:00:00:01", Sandbox: args.Netns}},
		IPs: []*types100.IPConfig{{
			Interface: types100.Int(0),
			Address:   net.IPNet{IP: net.ParseIP("192.0.2.10").To4(), Mask: net.CIDRMask(24, 32)},
			Gateway:   net.ParseIP("192.0.2.1").To4(),
		}},
		Routes: []*types.Route{{Dst: *routed, GW: net.ParseIP("192.0.2.1").To4()}},
		DNS:    types.DNS{Nameservers: []string{"192.0.2.53"}, Search: []string{"first.test"}},
	}
	return types.PrintResult(res, conf.CNIVersion)
}
