package routing_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/routing"
)

func stateNamed(t *testing.T, name string) *routing.Input {
	t.Helper()
	for _, st := range states() {
		if st.name == name {
			return &st.in
		}
	}
	t.Fatalf("no state %q", name)
	return nil
}

func TestLearnedRoute(t *testing.T) {
	lp := func(pfx, nh string) routing.LearnedPath {
		return routing.LearnedPath{Prefix: netip.MustParsePrefix(pfx), NextHop: netip.MustParseAddr(nh)}
	}
	tests := []struct {
		name  string
		state string
		path  routing.LearnedPath
		want  string // "" = not installed
	}{
		{"remote block, no encapsulation", "mesh", lp("10.244.0.64/26", "10.101.1.12"), "10.244.0.64/26 via 10.101.1.12"},
		{"remote borrowed address", "mesh", lp("10.244.0.5/32", "10.101.1.13"), "10.244.0.5/32 via 10.101.1.13"},
		{"own block", "mesh", lp("10.244.0.0/26", "10.101.1.12"), ""},
		{"own borrowed address", "mesh", lp("10.244.0.70/32", "10.101.1.12"), ""},
		{"next hop is this host", "mesh", lp("10.244.0.64/26", "10.101.1.11"), ""},
		{"outside every pool", "mesh", lp("0.0.0.0/0", "10.101.1.1"), ""},
		{"family mismatch", "mesh", lp("10.244.0.64/26", "fd00::1"), ""},
		{"unknown block in a pool", "mesh", lp("10.244.7.0/26", "10.101.1.1"), "10.244.7.0/26 via 10.101.1.1"},
		{"host bits are masked", "mesh", lp("10.244.7.5/26", "10.101.1.1"), "10.244.7.0/26 via 10.101.1.1"},
		{"VXLAN pool is routed from the datastore", "vxlan-always", lp("10.244.0.64/26", "10.101.1.12"), ""},
		{"IP-in-IP cross subnet: same subnet is direct", "ipip-crosssubnet", lp("10.244.0.64/26", "10.101.1.12"), "10.244.0.64/26 via 10.101.1.12"},
		{"IP-in-IP cross subnet: other subnet tunnels to the owner", "ipip-crosssubnet", lp("10.244.0.128/26", "10.101.1.1"), "10.244.0.128/26 via 10.102.1.11 dev tunl0 onlink"},
		{"IP-in-IP cross subnet: unknown owner tunnels to the next hop", "ipip-crosssubnet", lp("10.244.9.0/26", "10.102.1.99"), "10.244.9.0/26 via 10.102.1.99 dev tunl0 onlink"},
		{"IPv6 block", "dual-stack", lp("fd00:244::40/122", "fd00:101::12"), "fd00:244::40/122 via fd00:101::12"},
		{"own IPv6 block", "dual-stack", lp("fd00:244::/122", "fd00:101::12"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := routing.Desired(stateNamed(t, tc.state))
			r, ok := p.LearnedRoute(tc.path)
			got := ""
			if ok {
				got = r.String()
			}
			if got != tc.want {
				t.Errorf("LearnedRoute(%v) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestKernelMergesLearned(t *testing.T) {
	p := routing.Desired(stateNamed(t, "vxlan-crosssubnet"))
	// A learned path for a VXLAN block is ignored; a second path for one
	// prefix is ignored; a path in no pool is ignored.
	p.Routes = append(p.Routes, routing.Route{Dst: netip.MustParsePrefix("10.9.0.0/16"), Type: routing.RouteBlackhole})
	ks := p.Kernel([]routing.LearnedPath{
		{Prefix: netip.MustParsePrefix("10.244.0.64/26"), NextHop: netip.MustParseAddr("10.101.1.99")},
		{Prefix: netip.MustParsePrefix("192.168.0.0/16"), NextHop: netip.MustParseAddr("10.101.1.99")},
	})
	want := `device vxlan.tabby vxlan id 4096 port 4789 local 10.101.1.11 addr 10.244.0.1 mac 66:0a:f4:00:01:01
  fdb 66:0a:f4:00:41:01 dst 10.101.1.12; neigh 10.244.0.65 lladdr 66:0a:f4:00:41:01 (node h2)
  fdb 66:0a:f4:00:81:01 dst 10.102.1.11; neigh 10.244.0.129 lladdr 66:0a:f4:00:81:01 (node h3)
routes:
  blackhole 10.9.0.0/16
  blackhole 10.244.0.0/26
  10.244.0.64/26 via 10.101.1.12
  10.244.0.128/26 via 10.244.0.129 dev vxlan.tabby onlink
`
	if diff := cmp.Diff(want, ks.Render()); diff != "" {
		t.Errorf("kernel state (-want +got):\n%s", diff)
	}

	m := routing.Desired(stateNamed(t, "mesh"))
	ks = m.Kernel([]routing.LearnedPath{
		{Prefix: netip.MustParsePrefix("10.244.0.64/26"), NextHop: netip.MustParseAddr("10.101.1.12")},
		{Prefix: netip.MustParsePrefix("10.244.0.64/26"), NextHop: netip.MustParseAddr("10.101.1.13")},
		{Prefix: netip.MustParsePrefix("10.244.0.0/26"), NextHop: netip.MustParseAddr("10.101.1.13")},
	})
	want = "routes:\n  blackhole 10.244.0.0/26\n  10.244.0.64/26 via 10.101.1.12\n  blackhole 10.244.1.0/26\n"
	if diff := cmp.Diff(want, ks.Render()); diff != "" {
		t.Errorf("kernel state (-want +got):\n%s", diff)
	}
}

func TestTunnelNeedHas(t *testing.T) {
	p := routing.Desired(stateNamed(t, "vxlan-always"))
	for _, tc := range []struct {
		addr string
		want bool
	}{{"10.244.3.4", true}, {"10.245.0.1", false}} {
		if got := p.VXLANTunnel.Has(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("VXLANTunnel.Has(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
