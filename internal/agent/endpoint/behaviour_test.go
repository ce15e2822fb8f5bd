package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// wantErrContaining fails t unless err mentions every substring.
func wantErrContaining(t *testing.T, what string, err error, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = nil, want error containing %q", what, substrs)
	}
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s = %v, want error containing %q", what, err, s)
		}
	}
}

func TestPrivilegedCheckFindsBreakage(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	h := HostIfName("c1", "eth0")
	tests := []struct {
		name      string
		inHost    func() error // breaks something in the host namespace
		inCont    func() error // or in the container
		removeNS  bool
		allowFwd  bool // Check with AllowIPForwarding set
		wantErrIs []string
	}{
		{name: "host route deleted", inHost: func() error {
			return netlink.RouteDel(&netlink.Route{Dst: ipNet(netip.MustParsePrefix("10.65.0.1/32")), Scope: netlink.SCOPE_LINK})
		}, wantErrIs: []string{"host route to 10.65.0.1/32 dev " + h + " is missing"}},
		{name: "host route moved to the uplink", inHost: func() error {
			if err := netlink.RouteDel(&netlink.Route{Dst: ipNet(netip.MustParsePrefix("10.65.0.1/32")), Scope: netlink.SCOPE_LINK}); err != nil {
				return err
			}
			up, err := netlink.LinkByName(testUplink)
			if err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("10.65.0.1/32"))})
		}, wantErrIs: []string{"host route to 10.65.0.1/32 is on interface up0, want " + h}},
		{name: "host interface down", inHost: func() error {
			l, err := netlink.LinkByName(h)
			if err != nil {
				return err
			}
			return netlink.LinkSetDown(l)
		}, wantErrIs: []string{"host interface " + h + " is down"}},
		{name: "host MAC changed", inHost: func() error {
			l, err := netlink.LinkByName(h)
			if err != nil {
				return err
			}
			return netlink.LinkSetHardwareAddr(l, net.HardwareAddr{2, 0, 0, 0, 0, 1})
		}, wantErrIs: []string{"has MAC 02:00:00:00:00:01, want ee:ee:ee:ee:ee:ee"}},
		{name: "host address added", inHost: func() error {
			l, err := netlink.LinkByName(h)
			if err != nil {
				return err
			}
			return netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("10.9.9.9/32"))})
		}, wantErrIs: []string{"has address 10.9.9.9/32, want none"}},
		{name: "proxy arp off", inHost: func() error {
			return writeSysctls([]sysctl{{"net/ipv4/conf/" + h + "/proxy_arp", "0"}})
		}, wantErrIs: []string{"host sysctl net.ipv4.conf." + h + ".proxy_arp is 0, want 1"}},
		{name: "host interface deleted", inHost: func() error {
			l, err := netlink.LinkByName(h)
			if err != nil {
				return err
			}
			return netlink.LinkDel(l)
		}, wantErrIs: []string{"host interface " + h + " does not exist", "container interface eth0 does not exist"}},
		{name: "container default route deleted", inCont: func() error {
			return netlink.RouteDel(&netlink.Route{Gw: ipOf(GatewayIPv4)})
		}, wantErrIs: []string{"container default route via 169.254.1.1 dev eth0 is missing"}},
		{name: "container gateway route deleted", inCont: func() error {
			// Deleting the link route also flushes the default route via it.
			return netlink.RouteDel(&netlink.Route{Dst: ipNet(netip.MustParsePrefix("169.254.1.1/32")), Scope: netlink.SCOPE_LINK})
		}, wantErrIs: []string{"container route 169.254.1.1/32 scope link dev eth0 is missing"}},
		{name: "container address deleted", inCont: func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.AddrDel(l, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("10.65.0.1/32"))})
		}, wantErrIs: []string{"container interface eth0 lacks address 10.65.0.1/32"}},
		{name: "container interface down", inCont: func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkSetDown(l)
		}, wantErrIs: []string{"container interface eth0 is down"}},
		{name: "container forwarding on", inCont: func() error {
			return writeSysctls([]sysctl{{"net/ipv4/ip_forward", "1"}})
		}, wantErrIs: []string{"container sysctl net.ipv4.ip_forward is 1, want 0"}},
		{name: "forwarding expected but off", allowFwd: true,
			wantErrIs: []string{"container sysctl net.ipv4.ip_forward is 0, want 1"}},
		{name: "container netns gone", removeNS: true,
			wantErrIs: []string{"does not exist"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, cont := NewTestHost(t), NewTestNetNS(t, "tbyt-c-")
			dp := HostDP{New(testLogger(t)), host}
			cfg := Config{ContainerID: "c1", IfName: "eth0", NetNS: cont, Addrs: pfxs("10.65.0.1/32")}
			if _, err := dp.Add(ctx, cfg); err != nil {
				t.Fatalf("Add: %v", err)
			}
			if err := dp.Check(ctx, cfg); err != nil {
				t.Fatalf("Check before breaking anything: %v", err)
			}
			if tc.inHost != nil {
				InNS(t, host, tc.inHost)
			}
			if tc.inCont != nil {
				InNS(t, cont, tc.inCont)
			}
			if tc.removeNS {
				RemoveTestNetNS(t, cont)
			}
			cfg.AllowIPForwarding = tc.allowFwd
			err := dp.Check(ctx, cfg)
			wantErrContaining(t, "Check", err, tc.wantErrIs...)
			if err != nil && !strings.HasPrefix(err.Error(), "check endpoint "+h) {
				t.Errorf("Check error %q does not start with %q", err, "check endpoint "+h)
			}
		})
	}
}

func TestPrivilegedDel(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		cfg    Config
		before func(t *testing.T, cont string) // after Add, before Del
		netns  func(cont string) string        // the netns Del is given
	}{
		{name: "plain", cfg: Config{ContainerID: "c1", IfName: "eth0"}, netns: func(c string) string { return c }},
		{name: "netns deleted first", cfg: Config{ContainerID: "c1", IfName: "eth0"},
			before: func(t *testing.T, cont string) { RemoveTestNetNS(t, cont) },
			netns:  func(c string) string { return c }},
		{name: "no netns given", cfg: Config{ContainerID: "c1", IfName: "eth0"}, netns: func(string) string { return "" }},
		{name: "netns path is not a namespace", cfg: Config{ContainerID: "c1", IfName: "eth0"}, netns: func(string) string { return "/proc/self/status" }},
		{name: "host name overridden", cfg: Config{ContainerID: "c1", IfName: "eth0", HostIfName: "tbyoverride"},
			netns: func(c string) string { return c }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, cont := NewTestHost(t), NewTestNetNS(t, "tbyt-c-")
			dp := HostDP{New(testLogger(t)), host}
			cfg := tc.cfg
			cfg.NetNS = cont
			cfg.Addrs = pfxs("10.65.0.1/32", "fd00:65::1/128")
			if _, err := dp.Add(ctx, cfg); err != nil {
				t.Fatalf("Add: %v", err)
			}
			if tc.before != nil {
				tc.before(t, cont)
			}
			for i := range 2 {
				if err := dp.Del(ctx, cfg.ContainerID, cfg.IfName, tc.netns(cont)); err != nil {
					t.Fatalf("Del #%d: %v", i+1, err)
				}
			}
			hs := takeSnapshot(t, host)
			if got := workloadLinks(hs); len(got) != 0 {
				t.Errorf("host workload interfaces after Del = %v, want none", got)
			}
			for link, routes := range hs.Routes {
				for _, r := range routes {
					if r.Dst == "10.65.0.1/32" || r.Dst == "fd00:65::1/128" {
						t.Errorf("host route %+v on %s remains after Del", r, link)
					}
				}
			}
			if netns.Exists(cont) {
				if diff := cmp.Diff([]string{"lo"}, linkNames(takeSnapshot(t, cont))); diff != "" {
					t.Errorf("container interfaces after Del (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestPrivilegedDelBadInput(t *testing.T) {
	RequireRoot(t)
	dp := HostDP{New(testLogger(t)), NewTestHost(t)}
	ctx := context.Background()
	wantErrContaining(t, "Del without container ID", dp.Del(ctx, "", "eth0", ""), "ContainerID")
	wantErrContaining(t, "Del with bad ifname", dp.Del(ctx, "c1", "a/b", ""), "IfName", `"a/b"`)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	wantErrContaining(t, "Del with cancelled context", dp.Del(cancelled, "c1", "eth0", ""), "context canceled")
}

func TestPrivilegedAddReplacesStale(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	h := HostIfName("c1", "eth0")
	tests := []struct {
		name  string
		stale func() error // run in the host namespace
	}{
		{name: "stale veth with a route to the address", stale: func() error {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = h
			v := netlink.NewVeth(attrs)
			v.PeerName = "tbytstalep"
			if err := netlink.LinkAdd(v); err != nil {
				return err
			}
			l, err := netlink.LinkByName(h)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("10.65.0.1/32")), Scope: netlink.SCOPE_LINK})
		}},
		{name: "stale interface of another type", stale: func() error {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = h
			return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, cont := NewTestHost(t), NewTestNetNS(t, "tbyt-c-")
			dp := HostDP{New(testLogger(t)), host}
			InNS(t, host, tc.stale)
			cfg := Config{ContainerID: "c1", IfName: "eth0", NetNS: cont, Addrs: pfxs("10.65.0.1/32")}
			if _, err := dp.Add(ctx, cfg); err != nil {
				t.Fatalf("Add over a stale interface: %v", err)
			}
			if err := dp.Check(ctx, cfg); err != nil {
				t.Errorf("Check: %v", err)
			}
			hs := takeSnapshot(t, host)
			if _, ok := hs.Links["tbytstalep"]; ok {
				t.Errorf("the stale veth's peer is still in the host namespace")
			}
			if diff := cmp.Diff([]string{h}, workloadLinks(hs)); diff != "" {
				t.Errorf("host workload interfaces (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPrivilegedAddFailureLeavesNothing makes Add fail early, in the
// kernel, and after each of its steps, and checks that both namespaces are
// as they were (lo being up and the container's sysctls excepted).
func TestPrivilegedAddFailureLeavesNothing(t *testing.T) {
	RequireRoot(t)
	h := HostIfName("c1", "eth0")
	dst := netip.MustParsePrefix("10.65.0.1/32")
	failAt := func(step string) func(string) error {
		return func(s string) error {
			if s == step {
				return fmt.Errorf("injected failure after step %s", s)
			}
			return nil
		}
	}
	tests := []struct {
		name      string
		cfg       func(c *Config)
		inHost    func() error // prepares the host namespace
		inCont    func() error // prepares the container namespace
		hook      func(string) error
		cancel    bool
		wantErrIs []string
	}{
		{name: "bad MTU", cfg: func(c *Config) { c.MTU = 70000 }, wantErrIs: []string{"MTU 70000"}},
		{name: "MTU below IPv6 minimum", cfg: func(c *Config) { c.MTU = 1200 }, wantErrIs: []string{"MTU 1200", "IPv6"}},
		{name: "netns missing", cfg: func(c *Config) { c.NetNS = "/var/run/netns/tbyt-missing" }, wantErrIs: []string{"/var/run/netns/tbyt-missing"}},
		{name: "address routed to another interface", inHost: func() error {
			up, err := netlink.LinkByName(testUplink)
			if err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: ipNet(dst)})
		}, wantErrIs: []string{"route to 10.65.0.1/32 already exists on interface up0, not on " + h}},
		{name: "stale interface kept when the address is routed elsewhere", inHost: func() error {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = h
			v := netlink.NewVeth(attrs)
			v.PeerName = "tbytstalep"
			if err := netlink.LinkAdd(v); err != nil {
				return err
			}
			up, err := netlink.LinkByName(testUplink)
			if err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: ipNet(dst)})
		}, wantErrIs: []string{"route to 10.65.0.1/32 already exists on interface up0"}},
		{name: "address blackholed", inHost: func() error {
			return netlink.RouteAdd(&netlink.Route{Dst: ipNet(netip.MustParsePrefix("fd00:65::1/128")), Type: unix.RTN_BLACKHOLE})
		}, wantErrIs: []string{"route to fd00:65::1/128 already exists on a blackhole route"}},
		{name: "ifname taken in the container", inCont: func() error {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = "eth0"
			return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		}, wantErrIs: []string{"interface eth0 already exists in netns"}},
		{name: "cancelled context", cancel: true, wantErrIs: []string{"context canceled"}},
		{name: "fail after veth", hook: failAt(stepVeth), wantErrIs: []string{"after step veth"}},
		{name: "fail after host side", hook: failAt(stepHost), wantErrIs: []string{"after step host"}},
		{name: "fail after container side", hook: failAt(stepContainer), wantErrIs: []string{"after step container"}},
		{name: "fail after routes", hook: failAt(stepRoutes), wantErrIs: []string{"after step routes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, cont := NewTestHost(t), NewTestNetNS(t, "tbyt-c-")
			if tc.inHost != nil {
				InNS(t, host, tc.inHost)
			}
			if tc.inCont != nil {
				InNS(t, cont, tc.inCont)
			}
			w := New(testLogger(t))
			w.afterStep = tc.hook
			dp := HostDP{w, host}
			cfg := Config{ContainerID: "c1", IfName: "eth0", NetNS: cont, Addrs: pfxs("10.65.0.1/32", "fd00:65::1/128"), MTU: 1400}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			hostBefore, contBefore := takeSnapshot(t, host), takeSnapshot(t, cont)
			_, err := dp.Add(ctx, cfg)
			wantErrContaining(t, "Add", err, tc.wantErrIs...)

			// Add brings lo up for good, which also gives it its addresses.
			ignoreLo := cmp.Options{
				cmpopts.IgnoreMapEntries(func(k string, _ linkView) bool { return k == "lo" }),
				cmpopts.IgnoreMapEntries(func(k string, _ []string) bool { return k == "lo" }),
			}
			if diff := cmp.Diff(hostBefore, takeSnapshot(t, host), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("host namespace changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(contBefore, takeSnapshot(t, cont), cmpopts.EquateEmpty(), ignoreLo); diff != "" {
				t.Errorf("container namespace changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestPrivilegedListAndDeleteHostIf(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	host := NewTestHost(t)
	dp := HostDP{New(testLogger(t)), host}
	// Interfaces List must ignore: a tby-named non-veth and a veth
	// without the prefix (the uplink up0 already is one).
	InNS(t, host, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "tbynotaveth"
		return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
	})
	c1, c2 := NewTestNetNS(t, "tbyt-c1-"), NewTestNetNS(t, "tbyt-c2-")
	for _, c := range []Config{
		{ContainerID: "c1", IfName: "eth0", NetNS: c1, Addrs: pfxs("fd00:65::1/128", "10.65.0.1/32")},
		{ContainerID: "c2", IfName: "eth0", NetNS: c2, Addrs: pfxs("10.65.0.2/32")},
	} {
		if _, err := dp.Add(ctx, c); err != nil {
			t.Fatalf("Add %s: %v", c.ContainerID, err)
		}
	}
	got, err := dp.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	hs := takeSnapshot(t, host)
	n1, n2 := HostIfName("c1", "eth0"), HostIfName("c2", "eth0")
	want := []HostEndpoint{
		{Name: n1, Index: hs.Index[n1], Up: true, Addrs: pfxs("10.65.0.1/32", "fd00:65::1/128")},
		{Name: n2, Index: hs.Index[n2], Up: true, Addrs: pfxs("10.65.0.2/32")},
	}
	if n2 < n1 {
		want[0], want[1] = want[1], want[0]
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	wantErrContaining(t, "DeleteHostIf(tbynotaveth)", dp.DeleteHostIf(ctx, "tbynotaveth"), "not a veth")
	wantErrContaining(t, "DeleteHostIf(up0)", dp.DeleteHostIf(ctx, testUplink), "not a workload interface")
	wantErrContaining(t, "DeleteHostIf(tby)", dp.DeleteHostIf(ctx, "tby"), "not a workload interface")
	if err := dp.DeleteHostIf(ctx, n1); err != nil {
		t.Fatalf("DeleteHostIf: %v", err)
	}
	got, err = dp.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != 1 || got[0].Name != n2 {
		t.Errorf("List after DeleteHostIf = %+v, want only %s", got, n2)
	}
	if diff := cmp.Diff([]string{"lo"}, linkNames(takeSnapshot(t, c1))); diff != "" {
		t.Errorf("c1 interfaces after DeleteHostIf (-want +got):\n%s", diff)
	}
}

func TestPrivilegedDetectMTU(t *testing.T) {
	RequireRoot(t)
	host, empty := NewTestHost(t), NewTestNetNS(t, "tbyt-e-")
	tests := []struct {
		name    string
		ns      string
		nodeIP  netip.Addr
		want    int
		wantErr string
	}{
		{name: "default route", ns: host, want: testUplinkMTU},
		{name: "node IPv4", ns: host, nodeIP: netip.MustParseAddr("192.0.2.10"), want: testUplinkMTU},
		{name: "node IPv6", ns: host, nodeIP: netip.MustParseAddr("2001:db8:1::10"), want: testUplinkMTU},
		{name: "unknown node IP", ns: host, nodeIP: netip.MustParseAddr("198.51.100.1"), wantErr: "node IP 198.51.100.1 is not on any interface"},
		{name: "no default route", ns: empty, wantErr: "no default route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got int
			var err error
			InNS(t, tc.ns, func() error { got, err = DetectMTU(tc.nodeIP); return nil })
			if tc.wantErr != "" {
				wantErrContaining(t, "DetectMTU", err, tc.wantErr)
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("DetectMTU(%v) = %d, %v; want %d, nil", tc.nodeIP, got, err, tc.want)
			}
		})
	}
}

// TestPrivilegedConcurrentAdds wires several containers at once, as the
// agent does when many containers start together.
func TestPrivilegedConcurrentAdds(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	host := NewTestHost(t)
	dp := HostDP{New(testLogger(t)), host}
	const n = 8
	cfgs := make([]Config, n)
	for i := range cfgs {
		cfgs[i] = Config{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0", NetNS: NewTestNetNS(t, "tbyt-cc-"),
			Addrs: pfxs(fmt.Sprintf("10.65.0.%d/32", i+1))}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range cfgs {
		wg.Go(func() { _, errs[i] = dp.Add(ctx, cfgs[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Add: %v", err)
	}
	for _, c := range cfgs {
		if err := dp.Check(ctx, c); err != nil {
			t.Errorf("Check %s: %v", c.ContainerID, err)
		}
	}
	eps, err := dp.List(ctx)
	if err != nil || len(eps) != n {
		t.Fatalf("List = %d endpoints, %v; want %d", len(eps), err, n)
	}
	for i := range cfgs {
		wg.Go(func() { errs[i] = dp.Del(ctx, cfgs[i].ContainerID, "eth0", cfgs[i].NetNS) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Del: %v", err)
	}
	if eps, err := dp.List(ctx); err != nil || len(eps) != 0 {
		t.Errorf("List after Del = %v, %v; want none", eps, err)
	}
}
