package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/cni/cnitest"
)

// chainedResult is the part of a result the chain test compares.
type chainedResult struct {
	Interfaces  []string // name@sandbox
	IPs         []string // address on interface name
	Routes      []string
	Nameservers []string
	Search      []string
}

func summarize(r *types100.Result) chainedResult {
	var s chainedResult
	for _, ifc := range r.Interfaces {
		s.Interfaces = append(s.Interfaces, ifc.Name+"@"+ifc.Sandbox)
	}
	for _, ip := range r.IPs {
		on := "(no interface)"
		if ip.Interface != nil {
			on = "(bad index)"
			if i := *ip.Interface; i >= 0 && i < len(r.Interfaces) {
				on = r.Interfaces[i].Name
			}
		}
		s.IPs = append(s.IPs, ip.Address.String()+" on "+on)
	}
	for _, rt := range r.Routes {
		s.Routes = append(s.Routes, rt.Dst.String()+" via "+rt.GW.String())
	}
	s.Nameservers, s.Search = r.DNS.Nameservers, r.DNS.Search
	return s
}

// TestChainKeepsPrevResult runs a real chain through libcni: a plugin
// that reports an interface, an address, a route and DNS, then tabby.
// The final result (in each version that has interfaces) keeps all of it
// and adds Tabby's interfaces and address, with the interface indexes
// fixed up; CHECK and DEL of the chain pass.
func TestChainKeepsPrevResult(t *testing.T) {
	for _, v := range []string{"1.1.0", "1.0.0", "0.4.0", "0.3.1"} {
		t.Run(v, func(t *testing.T) {
			ctx := context.Background()
			agent := cnitest.NewAgent()
			socket := cnitest.Serve(t, agent)
			conf, _ := json.Marshal(map[string]any{"cniVersion": v, "name": "chain", "plugins": []any{
				map[string]any{"type": "firstplugin"},
				map[string]any{"type": "tabby", "agent_socket": socket, "dns": map[string]any{"nameservers": []string{"192.0.2.53", "10.65.0.53"}}},
			}})
			list, err := libcni.NetworkConfFromBytes(conf)
			if err != nil {
				t.Fatalf("conflist: %v", err)
			}
			c := libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
			rt := runtimeConf("ctr-chain")
			res, err := c.AddNetworkList(ctx, list, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if res.Version() != v {
				t.Errorf("result version = %s; want %s", res.Version(), v)
			}
			r, err := types100.NewResultFromResult(res)
			if err != nil {
				t.Fatalf("convert result: %v", err)
			}
			if agent.Last("ADD") == nil {
				t.Fatal("the agent got no ADD")
			}
			want := chainedResult{
				Interfaces:  []string{"first0@" + fakeNetNS, hostIfOf(t, r) + "@", "eth0@" + fakeNetNS},
				IPs:         []string{"192.0.2.10/24 on first0", "10.65.0.1/32 on eth0"},
				Routes:      []string{"198.51.100.0/24 via 192.0.2.1", "0.0.0.0/0 via 169.254.1.1"},
				Nameservers: []string{"192.0.2.53", "10.65.0.53"},
				Search:      []string{"first.test"},
			}
			if diff := cmp.Diff(want, summarize(r)); diff != "" {
				t.Errorf("chained result (-want +got):\n%s", diff)
			}
			// CHECK (from 0.4.0) gets the cached chain result as
			// prevResult; the fake agent checks its address sits on eth0.
			if v >= "0.4.0" {
				if err := c.CheckNetworkList(ctx, list, rt); err != nil {
					t.Errorf("CHECK: %v", err)
				}
			}
			if err := c.DelNetworkList(ctx, list, rt); err != nil {
				t.Errorf("DEL: %v", err)
			}
			if h := agent.Handles(); len(h) != 0 {
				t.Errorf("handles after DEL = %v; want none", h)
			}
		})
	}
}

// hostIfOf is the name of Tabby's host-side interface (tby…) in r.
func hostIfOf(t *testing.T, r *types100.Result) string {
	t.Helper()
	for _, ifc := range r.Interfaces {
		if len(ifc.Name) > 3 && ifc.Name[:3] == "tby" {
			return ifc.Name
		}
	}
	return "(no tby interface)"
}

// TestBadPrevResult: a prevResult that does not decode is refused with
// code 7 before the agent is asked for anything.
func TestBadPrevResult(t *testing.T) {
	agent := cnitest.NewAgent()
	socket := cnitest.Serve(t, agent)
	stdin := `{"cniVersion":"1.1.0","name":"chain","type":"tabby","agent_socket":"` + socket + `","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"not-an-ip"}]}}`
	env := []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=ctr-bad", "CNI_NETNS=" + fakeNetNS, "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
	out, exit := execPlugin(t, "tabby", env, stdin)
	if exit == 0 {
		t.Fatalf("ADD with a bad prevResult exited 0: %s", out)
	}
	if e := parseError(t, out); e.Code != 7 || !strings.Contains(e.Msg, "prevResult") {
		t.Errorf("error = %+v; want code 7 naming prevResult", e)
	}
	if agent.Last("ADD") != nil || len(agent.Handles()) != 0 {
		t.Errorf("the agent got an ADD (handles %v); want nothing allocated", agent.Handles())
	}
}
