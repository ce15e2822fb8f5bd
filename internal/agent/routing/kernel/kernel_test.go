package kernel_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/agent/routing/kernel"
	"github.com/tabbynet/tabby/internal/agent/routing/kernel/kerneltest"
	"github.com/tabbynet/tabby/internal/agent/routing/routingtest"
)

// TestFakeContract runs the driver contract against the fake.
func TestFakeContract(t *testing.T) {
	kerneltest.RunContract(t, func(t *testing.T) kerneltest.Harness {
		f := kerneltest.NewFake()
		return kerneltest.Harness{
			Driver:     f,
			AddForeign: func(t *testing.T, dst netip.Prefix) { f.AddForeign(dst) },
			HasForeign: func(t *testing.T, dst netip.Prefix) bool { return true },
		}
	})
}

// newHost makes a namespace playing a host: uplink up0 (192.0.2.10/24) to
// a peer namespace, and a driver for it.
func newHost(t *testing.T) (string, *kernel.Driver) {
	t.Helper()
	s := routingtest.Suffix(t)
	host := routingtest.NewNS(t, "tbyrk-h-"+s)
	peer := routingtest.NewNS(t, "tbyrk-p-"+s)
	routingtest.Veth(t, host, kerneltest.Uplink, kerneltest.UplinkAddr.String(), peer, "up1", "192.0.2.1/24")
	d, err := kernel.New(kernel.Options{NetNS: routingtest.Path(host)})
	if err != nil {
		t.Fatalf("kernel.New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return host, d
}

// TestPrivilegedContract runs the driver contract against the kernel, in a
// fresh namespace per case.
func TestPrivilegedContract(t *testing.T) {
	routingtest.RequireRoot(t)
	kerneltest.RunContract(t, func(t *testing.T) kerneltest.Harness {
		host, d := newHost(t)
		return kerneltest.Harness{
			Driver: d,
			AddForeign: func(t *testing.T, dst netip.Prefix) {
				routingtest.IP(t, "-n", host, "route", "add", dst.String(), "via", "192.0.2.1", "proto", "static")
			},
			HasForeign: func(t *testing.T, dst netip.Prefix) bool {
				out := routingtest.IP(t, "-n", host, "route", "show", dst.String(), "proto", "static")
				return strings.Contains(out, "via 192.0.2.1")
			},
		}
	})
}

// TestPrivilegedRenderedRoutes checks the routes as iproute2 shows them:
// the protocol number, blackholes, onlink VXLAN routes, and that a
// container's /32 route (another protocol) survives.
func TestPrivilegedRenderedRoutes(t *testing.T) {
	routingtest.RequireRoot(t)
	host, d := newHost(t)
	routingtest.IP(t, "-n", host, "route", "add", "10.244.0.5/32", "dev", "up0", "scope", "link", "proto", "84")
	ks := &routing.KernelState{
		VXLAN: &routing.VXLANDevice{Name: routing.VXLANDeviceName, VNI: 4096, Port: 4789, LocalIP: netip.MustParseAddr("192.0.2.10"),
			Addr: netip.MustParseAddr("10.244.0.1"), MAC: "66:0a:f4:00:00:01"},
		VXLANPeers: []routing.VXLANPeer{{Node: "h2", NodeIP: netip.MustParseAddr("192.0.2.20"), TunnelAddr: netip.MustParseAddr("10.244.0.65"), MAC: "66:0a:f4:00:00:02"}},
		Routes: []routing.Route{
			{Dst: netip.MustParsePrefix("10.244.0.0/26"), Type: routing.RouteBlackhole},
			{Dst: netip.MustParsePrefix("10.244.0.64/26"), Gateway: netip.MustParseAddr("10.244.0.65"), Dev: routing.VXLANDeviceName, OnLink: true},
		},
	}
	if _, err := d.Apply(ks, kernel.ApplyOptions{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	out := routingtest.IP(t, "-n", host, "-4", "route", "show", "proto", "85")
	for _, want := range []string{"blackhole 10.244.0.0/26", "10.244.0.64/26 via 10.244.0.65 dev vxlan.tabby onlink"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip route show proto 85:\n%s\nlacks %q", out, want)
		}
	}
	link := routingtest.IP(t, "-n", host, "-d", "link", "show", "vxlan.tabby")
	for _, want := range []string{"mtu 1450", "66:0a:f4:00:00:01", "vxlan id 4096", "local 192.0.2.10", "dev up0", "dstport 4789", "nolearning"} {
		if !strings.Contains(link, want) {
			t.Errorf("ip -d link show vxlan.tabby:\n%s\nlacks %q", link, want)
		}
	}
	fdb := routingtest.IP(t, "-n", host, "neigh", "show", "dev", "vxlan.tabby")
	if !strings.Contains(fdb, "10.244.0.65 lladdr 66:0a:f4:00:00:02 PERMANENT") {
		t.Errorf("neighbors of vxlan.tabby:\n%s\nlack the peer's tunnel address", fdb)
	}
	bridge, err := routingtest.Exec(host, "bridge", "fdb", "show", "dev", "vxlan.tabby")
	if err != nil {
		t.Fatalf("bridge fdb: %v\n%s", err, bridge)
	}
	if !strings.Contains(bridge, "66:0a:f4:00:00:02 dst 192.0.2.20 self permanent") {
		t.Errorf("bridge fdb of vxlan.tabby:\n%s\nlacks the peer", bridge)
	}
	// Everything removed again, the container route left alone.
	if _, err := d.Apply(&routing.KernelState{}, kernel.ApplyOptions{}); err != nil {
		t.Fatalf("Apply empty: %v", err)
	}
	if out := routingtest.IP(t, "-n", host, "route", "show", "proto", "85"); strings.TrimSpace(out) != "" {
		t.Errorf("routes of proto 85 left:\n%s", out)
	}
	if out := routingtest.IP(t, "-n", host, "route", "show", "10.244.0.5"); !strings.Contains(out, "dev up0") {
		t.Errorf("container route is gone: %q", out)
	}
	if out := routingtest.IP(t, "-n", host, "link", "show"); strings.Contains(out, "vxlan.tabby") {
		t.Errorf("vxlan.tabby still exists:\n%s", out)
	}
}

// TestPrivilegedVXLANRepair: a device with wrong settings is recreated,
// a wrong MTU, address or stray neighbor is fixed.
func TestPrivilegedVXLANRepair(t *testing.T) {
	routingtest.RequireRoot(t)
	host, d := newHost(t)
	vx := &routing.VXLANDevice{Name: routing.VXLANDeviceName, VNI: 4096, Port: 4789, LocalIP: netip.MustParseAddr("192.0.2.10"),
		Addr: netip.MustParseAddr("10.244.0.1"), MAC: "66:0a:f4:00:00:01", MTU: 1400}
	routingtest.IP(t, "-n", host, "link", "add", "vxlan.tabby", "type", "vxlan", "id", "7", "dstport", "4789")
	if _, err := d.Apply(&routing.KernelState{VXLAN: vx}, kernel.ApplyOptions{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	routingtest.IP(t, "-n", host, "link", "set", "vxlan.tabby", "mtu", "1300")
	routingtest.IP(t, "-n", host, "addr", "add", "10.9.9.9/32", "dev", "vxlan.tabby")
	routingtest.IP(t, "-n", host, "neigh", "add", "10.9.9.8", "lladdr", "02:00:00:00:00:01", "dev", "vxlan.tabby", "nud", "permanent")
	rep, err := d.Apply(&routing.KernelState{VXLAN: vx}, kernel.ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(rep.Changes) != 3 {
		t.Errorf("repair changes %q, want 3 (mtu, address, neighbor)", rep.Changes)
	}
	link := routingtest.IP(t, "-n", host, "-d", "addr", "show", "vxlan.tabby")
	for _, want := range []string{"mtu 1400", "vxlan id 4096", "inet 10.244.0.1/32"} {
		if !strings.Contains(link, want) {
			t.Errorf("vxlan.tabby:\n%s\nlacks %q", link, want)
		}
	}
	if strings.Contains(link, "10.9.9.9") {
		t.Errorf("stray address left on vxlan.tabby:\n%s", link)
	}
}

// TestPrivilegedIPIP: tunl0 is configured where the kernel has ipip; where
// it has not, Apply says so plainly with ErrIPIPUnsupported and the other
// routes are still programmed.
func TestPrivilegedIPIP(t *testing.T) {
	routingtest.RequireRoot(t)
	host, d := newHost(t)
	ks := &routing.KernelState{
		IPIP: &routing.IPIPDevice{Name: routing.IPIPDeviceName, LocalIP: netip.MustParseAddr("192.0.2.10"), Addr: netip.MustParseAddr("10.244.0.1")},
		Routes: []routing.Route{
			{Dst: netip.MustParsePrefix("10.244.0.0/26"), Type: routing.RouteBlackhole},
			{Dst: netip.MustParsePrefix("10.244.0.64/26"), Gateway: netip.MustParseAddr("192.0.2.20"), Dev: routing.IPIPDeviceName, OnLink: true},
		},
	}
	rep, err := d.Apply(ks, kernel.ApplyOptions{})
	if rep.IPIP != nil {
		if !errors.Is(rep.IPIP, kernel.ErrIPIPUnsupported) {
			t.Fatalf("IPIP error %v is not ErrIPIPUnsupported", rep.IPIP)
		}
		t.Logf("this kernel has no ipip: %v", rep.IPIP)
		if err == nil || !strings.Contains(err.Error(), "tunl0") {
			t.Errorf("route through tunl0 without the device: error %v, want one naming tunl0", err)
		}
		out := routingtest.IP(t, "-n", host, "route", "show", "proto", "85")
		if !strings.Contains(out, "blackhole 10.244.0.0/26") {
			t.Errorf("blackhole not programmed without ipip:\n%s", out)
		}
		return
	}
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	out := routingtest.IP(t, "-n", host, "-d", "addr", "show", "tunl0")
	for _, want := range []string{"mtu 1480", "inet 10.244.0.1/32", "ipip"} {
		if !strings.Contains(out, want) {
			t.Errorf("tunl0:\n%s\nlacks %q", out, want)
		}
	}
	routes := routingtest.IP(t, "-n", host, "route", "show", "proto", "85")
	if !strings.Contains(routes, "10.244.0.64/26 via 192.0.2.20 dev tunl0 onlink") {
		t.Errorf("routes:\n%s\nlack the tunl0 route", routes)
	}
}

// TestPrivilegedVXLANTraffic: two hosts on one link, each with a container;
// the containers reach each other through vxlan.tabby (the packets are
// counted on the device), and not before the routes exist.
func TestPrivilegedVXLANTraffic(t *testing.T) {
	routingtest.RequireRoot(t)
	s := routingtest.Suffix(t)
	hA := routingtest.NewNS(t, "tbyrk-a-"+s)
	hB := routingtest.NewNS(t, "tbyrk-b-"+s)
	routingtest.Veth(t, hA, "up0", "192.0.2.1/24", hB, "up0", "192.0.2.2/24")
	for _, h := range []string{hA, hB} {
		routingtest.Sysctl(t, h, "net.ipv4.ip_forward", "1")
		// Proxy ARP answers for 169.254.1.1 only if the host has a route to it.
		routingtest.IP(t, "-n", h, "route", "add", "default", "via", "192.0.2.254")
	}
	cA := netip.MustParseAddr("10.244.0.2")
	cB := netip.MustParseAddr("10.244.0.66")
	nsA := routingtest.Container(t, hA, "tbyrk-ca-"+s, "tbyca"+s, cA)
	routingtest.Container(t, hB, "tbyrk-cb-"+s, "tbycb"+s, cB)

	type side struct {
		ns              string
		node            string
		ip, tun, peerIP netip.Addr
		peerTun         netip.Addr
		mac, peerMAC    string
		own, remote     netip.Prefix
		peerNodeName    string
	}
	sides := []*side{
		{ns: hA, node: "a", ip: netip.MustParseAddr("192.0.2.1"), tun: netip.MustParseAddr("10.244.0.1"), peerIP: netip.MustParseAddr("192.0.2.2"),
			peerTun: netip.MustParseAddr("10.244.0.65"), mac: "66:0a:f4:00:00:0a", peerMAC: "66:0a:f4:00:00:0b",
			own: netip.MustParsePrefix("10.244.0.0/26"), remote: netip.MustParsePrefix("10.244.0.64/26"), peerNodeName: "b"},
		{ns: hB, node: "b", ip: netip.MustParseAddr("192.0.2.2"), tun: netip.MustParseAddr("10.244.0.65"), peerIP: netip.MustParseAddr("192.0.2.1"),
			peerTun: netip.MustParseAddr("10.244.0.1"), mac: "66:0a:f4:00:00:0b", peerMAC: "66:0a:f4:00:00:0a",
			own: netip.MustParsePrefix("10.244.0.64/26"), remote: netip.MustParsePrefix("10.244.0.0/26"), peerNodeName: "a"},
	}
	if err := routingtest.Ping(nsA, cB, 1); err == nil {
		t.Fatalf("container B reachable before any route exists")
	}
	for _, sd := range sides {
		d, err := kernel.New(kernel.Options{NetNS: routingtest.Path(sd.ns)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		ks := &routing.KernelState{
			VXLAN:      &routing.VXLANDevice{Name: routing.VXLANDeviceName, VNI: 4096, Port: 4789, LocalIP: sd.ip, Addr: sd.tun, MAC: sd.mac},
			VXLANPeers: []routing.VXLANPeer{{Node: sd.peerNodeName, NodeIP: sd.peerIP, TunnelAddr: sd.peerTun, MAC: sd.peerMAC}},
			Routes: []routing.Route{
				{Dst: sd.own, Type: routing.RouteBlackhole},
				{Dst: sd.remote, Gateway: sd.peerTun, Dev: routing.VXLANDeviceName, OnLink: true},
			},
		}
		if _, err := d.Apply(ks, kernel.ApplyOptions{}); err != nil {
			t.Fatalf("Apply on %s: %v", sd.node, err)
		}
	}
	before := vxlanTxPackets(t, sides[0].ns)
	if err := routingtest.Ping(nsA, cB, 3); err != nil {
		t.Fatal(err)
	}
	if after := vxlanTxPackets(t, sides[0].ns); after-before < 3 {
		t.Errorf("vxlan.tabby sent %d packets during the ping, want at least 3", after-before)
	}
	// A blackholed address of the own block is dropped, not sent back out.
	if err := routingtest.Ping(nsA, netip.MustParseAddr("10.244.0.30"), 1); err == nil {
		t.Errorf("unused address of A's own block answered")
	}
}

func vxlanTxPackets(t *testing.T, ns string) uint64 {
	t.Helper()
	out := routingtest.IP(t, "-n", ns, "-j", "-s", "link", "show", "dev", routing.VXLANDeviceName)
	var links []struct {
		Stats struct {
			TX struct {
				Packets uint64 `json:"packets"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j -s link: %v\n%s", err, out)
	}
	return links[0].Stats.TX.Packets
}
