package endpoint

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func sorted(ss ...string) []string { return slices.Sorted(slices.Values(ss)) }

// hostKeys and containerKeys are every sysctl the wiring may set.
func hostKeys(name string) []string {
	return []string{
		"net/ipv4/conf/" + name + "/proxy_arp",
		"net/ipv4/neigh/" + name + "/proxy_delay",
		"net/ipv4/conf/" + name + "/forwarding",
		"net/ipv4/conf/" + name + "/route_localnet",
		"net/ipv6/conf/" + name + "/accept_dad",
		"net/ipv6/conf/" + name + "/disable_ipv6",
		"net/ipv6/conf/" + name + "/proxy_ndp",
		"net/ipv6/conf/" + name + "/forwarding",
		"net/ipv6/conf/" + name + "/accept_ra",
		"net/ipv6/conf/" + name + "/addr_gen_mode",
	}
}

func containerKeys(ifName string) []string {
	return []string{
		"net/ipv4/ip_forward",
		"net/ipv6/conf/all/forwarding",
		"net/ipv6/conf/" + ifName + "/accept_dad",
		"net/ipv6/conf/" + ifName + "/disable_ipv6",
	}
}

// pick returns the entries of m named in keys (the ones a case asserts).
func pick(m map[string]string, want map[string]string) map[string]string {
	out := map[string]string{}
	for k := range want {
		out[k] = m[k]
	}
	return out
}

func TestPrivilegedAddWiring(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	const gw6 = "fe80::ecee:eeff:feee:eeee"
	tests := []struct {
		name string
		cfg  Config // NetNS is filled in
		// Want, with H = host interface name and I = container ifname.
		hostRoutes  []routeView
		hostNeigh   bool // a permanent neighbour for the IPv4 address
		hostSysctls func(h string) map[string]string
		contAddrs   []string
		contRoutes  []routeView
		contNeighs  []string
		contSysctls func(i string) map[string]string
		mtu         int
	}{
		{
			name:       "ipv4",
			cfg:        Config{ContainerID: "c-ipv4", IfName: "eth0", Addrs: pfxs("10.65.0.1/26"), MTU: 1400},
			hostRoutes: []routeView{{Dst: "10.65.0.1/32", Scope: netlink.SCOPE_LINK, Protocol: RouteProtocol}},
			hostNeigh:  true,
			hostSysctls: func(h string) map[string]string {
				return map[string]string{
					"net/ipv4/conf/" + h + "/proxy_arp":      "1",
					"net/ipv4/neigh/" + h + "/proxy_delay":   "0",
					"net/ipv4/conf/" + h + "/forwarding":     "1",
					"net/ipv4/conf/" + h + "/route_localnet": "1",
				}
			},
			contAddrs: []string{"10.65.0.1/32"},
			contRoutes: []routeView{
				{Dst: "169.254.1.1/32", Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_BOOT},
				{Dst: "default", Gw: "169.254.1.1", Protocol: unix.RTPROT_BOOT},
			},
			contNeighs: []string{"169.254.1.1 ee:ee:ee:ee:ee:ee"},
			contSysctls: func(i string) map[string]string {
				return map[string]string{"net/ipv4/ip_forward": "0"}
			},
			mtu: 1400,
		},
		{
			name: "ipv6 only",
			cfg:  Config{ContainerID: "c-ipv6", IfName: "eth0", Addrs: pfxs("fd00:65::1/64")},
			// The kernel reports every IPv6 route with universe scope.
			hostRoutes: []routeView{{Dst: "fd00:65::1/128", Protocol: RouteProtocol}},
			hostSysctls: func(h string) map[string]string {
				return map[string]string{
					"net/ipv6/conf/" + h + "/accept_dad":    "0",
					"net/ipv6/conf/" + h + "/disable_ipv6":  "0",
					"net/ipv6/conf/" + h + "/proxy_ndp":     "1",
					"net/ipv6/conf/" + h + "/forwarding":    "1",
					"net/ipv6/conf/" + h + "/accept_ra":     "0",
					"net/ipv6/conf/" + h + "/addr_gen_mode": "1",
				}
			},
			contAddrs:  []string{"fd00:65::1/128"},
			contRoutes: []routeView{{Dst: "default", Gw: gw6, Protocol: unix.RTPROT_BOOT}},
			contSysctls: func(i string) map[string]string {
				return map[string]string{
					"net/ipv6/conf/all/forwarding":         "0",
					"net/ipv6/conf/" + i + "/accept_dad":   "0",
					"net/ipv6/conf/" + i + "/disable_ipv6": "0",
				}
			},
			mtu: DefaultMTU,
		},
		{
			name: "dual stack, forwarding allowed, jumbo",
			cfg: Config{ContainerID: "c-dual", IfName: "net1", Addrs: pfxs("10.65.0.3/32", "fd00:65::3/128"),
				MTU: 9000, AllowIPForwarding: true},
			hostRoutes: []routeView{
				{Dst: "10.65.0.3/32", Scope: netlink.SCOPE_LINK, Protocol: RouteProtocol},
				{Dst: "fd00:65::3/128", Protocol: RouteProtocol},
			},
			hostNeigh: true,
			hostSysctls: func(h string) map[string]string {
				return map[string]string{
					"net/ipv4/conf/" + h + "/proxy_arp":  "1",
					"net/ipv6/conf/" + h + "/proxy_ndp":  "1",
					"net/ipv6/conf/" + h + "/accept_dad": "0",
				}
			},
			contAddrs: []string{"10.65.0.3/32", "fd00:65::3/128"},
			contRoutes: []routeView{
				{Dst: "169.254.1.1/32", Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_BOOT},
				{Dst: "default", Gw: "169.254.1.1", Protocol: unix.RTPROT_BOOT},
				{Dst: "default", Gw: gw6, Protocol: unix.RTPROT_BOOT},
			},
			contNeighs: []string{"169.254.1.1 ee:ee:ee:ee:ee:ee"},
			contSysctls: func(i string) map[string]string {
				return map[string]string{"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"}
			},
			mtu: 9000,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, cont := NewTestHost(t), NewTestNetNS(t, "tbyt-c-")
			dp := HostDP{New(testLogger(t)), host}
			cfg := tc.cfg
			cfg.NetNS = cont
			res, err := dp.Add(ctx, cfg)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			h, i := HostIfName(cfg.ContainerID, cfg.IfName), cfg.IfName
			hs := takeSnapshot(t, host, hostKeys(h)...)
			cs := takeSnapshot(t, cont, containerKeys(i)...)

			// Result.
			wantRes := Result{HostIfName: h, HostMAC: HostMAC, ContainerMAC: cs.Links[i].MAC, ContainerIfIndex: cs.Index[i], Sandbox: cont}
			if diff := cmp.Diff(wantRes, res); diff != "" {
				t.Errorf("Result mismatch (-want +got):\n%s", diff)
			}

			// Host side.
			if diff := cmp.Diff([]string{h}, workloadLinks(hs)); diff != "" {
				t.Fatalf("host workload interfaces (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(linkView{Name: h, Type: "veth", MAC: HostMAC, Up: true, MTU: tc.mtu}, hs.Links[h]); diff != "" {
				t.Errorf("host interface (-want +got):\n%s", diff)
			}
			if got := hs.Addrs[h]; len(got) != 0 {
				t.Errorf("host interface addresses = %v, want none", got)
			}
			if diff := cmp.Diff(tc.hostRoutes, hs.Routes[h]); diff != "" {
				t.Errorf("host routes (-want +got):\n%s", diff)
			}
			var wantHostNeigh []string
			if tc.hostNeigh {
				wantHostNeigh = []string{tc.contAddrs[0][:len(tc.contAddrs[0])-3] + " " + res.ContainerMAC}
			}
			if diff := cmp.Diff(wantHostNeigh, hs.Neighs[h]); diff != "" {
				t.Errorf("host permanent neighbours (-want +got):\n%s", diff)
			}
			if want := tc.hostSysctls(h); !cmp.Equal(want, pick(hs.Sysctls, want)) {
				t.Errorf("host sysctls (-want +got):\n%s", cmp.Diff(want, pick(hs.Sysctls, want)))
			}
			if _, v6 := cfg.families(); v6 {
				if diff := cmp.Diff([]string{gw6 + "/64"}, hs.LL[h]); diff != "" {
					t.Errorf("host link-local addresses (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(linkView{Name: testUplink, Type: "veth", MAC: hs.Links[testUplink].MAC, Up: true, MTU: testUplinkMTU}, hs.Links[testUplink]); diff != "" {
				t.Errorf("uplink changed (-want +got):\n%s", diff)
			}

			// Container side.
			if diff := cmp.Diff(sorted("lo", i), linkNames(cs)); diff != "" {
				t.Fatalf("container interfaces (-want +got):\n%s", diff)
			}
			if !cs.Links["lo"].Up {
				t.Errorf("container lo is down")
			}
			if diff := cmp.Diff(linkView{Name: i, Type: "veth", MAC: res.ContainerMAC, Up: true, MTU: tc.mtu}, cs.Links[i]); diff != "" {
				t.Errorf("container interface (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.contAddrs, cs.Addrs[i]); diff != "" {
				t.Errorf("container addresses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.contRoutes, cs.Routes[i]); diff != "" {
				t.Errorf("container routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.contNeighs, cs.Neighs[i], cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("container permanent neighbours (-want +got):\n%s", diff)
			}
			if want := tc.contSysctls(i); !cmp.Equal(want, pick(cs.Sysctls, want)) {
				t.Errorf("container sysctls (-want +got):\n%s", cmp.Diff(want, pick(cs.Sysctls, want)))
			}

			if err := dp.Check(ctx, cfg); err != nil {
				t.Errorf("Check after Add: %v", err)
			}
			if err := dp.Del(ctx, cfg.ContainerID, cfg.IfName, cont); err != nil {
				t.Fatalf("Del: %v", err)
			}
			hs = takeSnapshot(t, host)
			cs = takeSnapshot(t, cont)
			if got := workloadLinks(hs); len(got) != 0 {
				t.Errorf("host workload interfaces after Del = %v, want none", got)
			}
			if diff := cmp.Diff([]string{"lo"}, linkNames(cs)); diff != "" {
				t.Errorf("container interfaces after Del (-want +got):\n%s", diff)
			}
		})
	}
}
