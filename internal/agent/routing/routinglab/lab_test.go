package routinglab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testenv"
)

// TestPrivilegedLabMesh: three hosts in a full mesh, containers on every
// pair reach each other (ICMP and TCP); an agent restart during a
// cross-host `ping -i 0.01` loses no packet; a host leaving (agent stopped,
// Node deleted) has its routes withdrawn everywhere.
func TestPrivilegedLabMesh(t *testing.T) {
	e := up(t, lab.Config{Name: "rm", Nodes: 3})
	cs := []*lab.Container{e.run("c1", "h1"), e.run("c2", "h2"), e.run("c3", "h3")}
	for i, a := range cs {
		for j, b := range cs {
			if i != j {
				e.reach(a, b)
			}
		}
	}
	e.waitRoute("h1", true, block(cs[1]), "via "+e.host("h2").IP.Addr().String())
	e.waitRoute("h1", true, "blackhole", block(cs[0]))
	st := e.waitPeersUp("h1", 3) // h2, h3 and the master
	for _, p := range st.Peers {
		if p.Type != "node-to-node mesh" {
			t.Errorf("h1 peer %s has type %q, want node-to-node mesh", p.Address, p.Type)
		}
	}
	text := e.statusText("h1")
	for _, want := range []string{"Tabby process is running.", "IPv4 BGP status", "node-to-node mesh", "Established", "No IPv6 peers found."} {
		if !strings.Contains(text, want) {
			t.Errorf("tabby node status on h1 lacks %q:\n%s", want, text)
		}
	}

	t.Run("agent restart loses no packets", func(t *testing.T) {
		cmd, err := e.lab.ContainerCommand(context.Background(), "c1", []string{"ping", "-i", "0.01", "-c", "1500", "-W", "1", "-q", cs[1].IP().String()})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := e.lab.StopAgent("h2", false); err != nil {
			t.Fatal(err)
		}
		if err := e.lab.StartAgent(context.Background(), "h2"); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("ping across the restart: %v\n%s", err, out.String())
		}
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out.String())
		if m == nil || m[1] != m[2] {
			t.Errorf("packets lost while h2's agent restarted:\n%s", out.String())
		}
		t.Logf("%s", strings.TrimSpace(out.String()))
	})

	t.Run("host leaving", func(t *testing.T) {
		if err := e.lab.StopAgent("h3", false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Delete(context.Background(), "Node", "", "h3", ""); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"h1", "h2", "master"} {
			e.waitRoute(n, false, block(cs[2]))
		}
		e.waitPeersUp("h1", 2)
		e.reach(cs[0], cs[1])
	})
}

// TestPrivilegedLabRouteReflector: the mesh is off and h3 reflects routes
// for every other node; containers on h1 and h2 still reach each other.
func TestPrivilegedLabRouteReflector(t *testing.T) { testRouteReflector(t, lab.IPv4) }

// TestPrivilegedLabRouteReflectorDualStack: the same in a dual-stack lab:
// every node peers with the reflector over IPv4 and IPv6, and the
// reflected IPv6 routes carry IPv6 traffic between h1 and h2.
func TestPrivilegedLabRouteReflectorDualStack(t *testing.T) { testRouteReflector(t, lab.Dual) }

func testRouteReflector(t *testing.T, family string) {
	e := up(t, lab.Config{Name: "rr", Nodes: 3, IPFamily: family})
	off := false
	e.updateNode("h3", func(n *api.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels["route-reflector"] = "true"
		n.Spec.BGP.RouteReflectorClusterID = "224.0.0.1"
	})
	e.apply(&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}},
		&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: "peer-with-route-reflectors"}, Spec: api.BGPPeerSpec{NodeSelector: "all()", PeerSelector: "route-reflector == 'true'"}})
	c1, c2 := e.run("c1", "h1"), e.run("c2", "h2")
	perNode := 1 // sessions per pair of nodes
	if family == lab.Dual {
		perNode = 2
	}
	st := e.waitPeersUp("h1", perNode)
	for _, p := range st.Peers {
		if p.Type != "route reflector" || (p.Address != e.host("h3").IP.Addr().String() && p.Address != e.host("h3").IP6.Addr().String()) {
			t.Errorf("h1 peers with %+v, want only the reflector h3", p)
		}
	}
	e.waitPeersUp("h3", 3*perNode) // h1, h2 and the master: its clients
	e.waitRoute("h1", true, block(c2), "via "+e.host("h2").IP.Addr().String())
	e.reach(c1, c2)
	e.reach(c2, c1)
	if family == lab.Dual {
		e.waitRoute("h1", true, block6(c2), "via "+e.host("h2").IP6.Addr().String())
		e.reach6(c1, c2)
		e.reach6(c2, c1)
	}
}

// birdConfig makes BIRD in the lab's router the eBGP peer of every agent
// node (AS 65000; each rack its own AS, 65100+rack), exporting what it
// learns to the router's kernel so it forwards between racks. With an
// IPv6 fabric it also peers with every node's IPv6 address (IPv6 unicast).
func birdConfig(st *lab.State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr all;\nrouter id %s;\n", st.Router.Legs[0].IP.Addr())
	b.WriteString("protocol device { scan time 10; }\n")
	b.WriteString("protocol kernel { ipv4 { import none; export all; }; }\n")
	b.WriteString("template bgp hosts { local as 65000; graceful restart on; ipv4 { import all; export all; }; }\n")
	v6 := st.Router.Legs[0].IP6.IsValid()
	if v6 {
		b.WriteString("protocol kernel { ipv6 { import none; export all; }; }\n")
		b.WriteString("template bgp hosts6 { local as 65000; graceful restart on; ipv6 { import all; export all; }; }\n")
	}
	for _, n := range st.AgentNodes() {
		fmt.Fprintf(&b, "protocol bgp %s from hosts { neighbor %s as %d; }\n", n.Name, n.IP.Addr(), 65100+n.Rack)
		if v6 {
			fmt.Fprintf(&b, "protocol bgp %s_6 from hosts6 { neighbor %s as %d; }\n", n.Name, n.IP6.Addr(), 65100+n.Rack)
		}
	}
	return b.String()
}

// startBIRD runs BIRD 2 with birdConfig in the lab's router until the
// test ends; it returns birdc's socket and BIRD's log.
func (e *env) startBIRD(t *testing.T) (string, *strings.Builder) {
	t.Helper()
	return e.startBIRDWith(t, birdConfig(e.lab.State()))
}

// startBIRDWith runs BIRD 2 with config text in the lab's router.
func (e *env) startBIRDWith(t *testing.T, text string) (string, *strings.Builder) {
	t.Helper()
	dir := t.TempDir()
	conf, sock := filepath.Join(dir, "bird.conf"), filepath.Join(dir, "bird.ctl")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	bird := testenv.NeedTool(t, "bird")
	testenv.NeedTool(t, "birdc")
	cmd, err := e.lab.NodeCommand(context.Background(), lab.RouterNode, []string{bird, "-f", "-c", conf, "-s", sock, "-P", filepath.Join(dir, "bird.pid")})
	if err != nil {
		t.Fatal(err)
	}
	birdLog := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = birdLog, birdLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return sock, birdLog
}

// peerRacksWithBIRD turns the mesh off and makes each rack's router
// (BIRD) the eBGP peer of the rack's nodes, over IPv4 and, with an IPv6
// fabric, IPv6; node n gets AS 65100+rack and the label rack=rN.
func (e *env) peerRacksWithBIRD() {
	st := e.lab.State()
	off := false
	e.apply(&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}})
	for r := 1; r <= st.NRacks; r++ {
		sel := fmt.Sprintf("rack == 'r%d'", r)
		e.apply(&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("rack%d-tor", r)}, Spec: api.BGPPeerSpec{
			NodeSelector: sel, PeerIP: st.Racks[r-1].Gateway.String(), ASNumber: 65000}})
		if gw6 := st.Racks[r-1].Gateway6; gw6.IsValid() {
			e.apply(&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("rack%d-tor-v6", r)}, Spec: api.BGPPeerSpec{
				NodeSelector: sel, PeerIP: gw6.String(), ASNumber: 65000}})
		}
	}
	for _, n := range st.AgentNodes() {
		as := api.ASNumber(65100 + n.Rack)
		e.updateNode(n.Name, func(node *api.Node) {
			if node.Labels == nil {
				node.Labels = map[string]string{}
			}
			node.Labels["rack"] = fmt.Sprintf("r%d", n.Rack)
			node.Spec.BGP.ASNumber = &as
		})
	}
}

// TestPrivilegedLabBIRDRacks: two racks, BIRD 2 in the router as each
// rack's eBGP peer (per-rack AS), mesh off: BIRD's table holds every
// host's block with the host as next hop, and containers across racks
// reach each other through it.
func TestPrivilegedLabBIRDRacks(t *testing.T) {
	e := up(t, lab.Config{Name: "rb", Nodes: 4, Racks: 2})
	st := e.lab.State()
	sock, birdLog := e.startBIRD(t)
	e.peerRacksWithBIRD()
	cs := []*lab.Container{e.run("c1", "h1"), e.run("c2", "h2"), e.run("c3", "h3"), e.run("c4", "h4")}

	deadline := time.Now().Add(labWait)
	for {
		out, _ := exec.Command("birdc", "-s", sock, "show", "route").CombinedOutput()
		missing := ""
		for _, c := range cs {
			h := e.host(c.Node)
			if !regexp.MustCompile(regexp.QuoteMeta(block(c)) + `[^\n]*\n\s+via ` + regexp.QuoteMeta(h.IP.Addr().String())).Match(out) {
				missing += fmt.Sprintf(" %s via %s;", block(c), h.IP.Addr())
			}
		}
		if missing == "" {
			t.Logf("BIRD's table:\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			proto, _ := exec.Command("birdc", "-s", sock, "show", "protocols").CombinedOutput()
			t.Fatalf("BIRD's table lacks%s\n%s\n%s\nbird log:\n%s", missing, out, proto, birdLog.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	st1 := e.waitPeersUp("h1", 1)
	if p := st1.Peers[0]; p.Type != "node specific" || p.Address != st.Racks[0].Gateway.String() {
		t.Errorf("h1's peer %+v, want the rack 1 router (node specific)", p)
	}
	// h1 (rack 1) and h2 (rack 2): across the racks, both ways.
	e.reach(cs[0], cs[1])
	e.reach(cs[1], cs[0])
	e.reach(cs[2], cs[3])
	e.waitRoute("h1", true, block(cs[1]), "via "+st.Racks[0].Gateway.String())
}

// TestPrivilegedLabBIRDRacksDualStack: a dual-stack lab over two racks
// with BIRD 2 in the router as each rack's eBGP peer over IPv4 and over
// IPv6: every host advertises its IPv6 block (IPv6 unicast on the IPv6
// sessions), BIRD's IPv6 table holds each with the host as next hop, each
// host keeps an IPv6 blackhole per own block and a route via its rack's
// router for the others, and containers across racks reach each other by
// ping -6 and TCP over IPv6 (and still over IPv4).
func TestPrivilegedLabBIRDRacksDualStack(t *testing.T) {
	e := up(t, lab.Config{Name: "rd", Nodes: 2, Racks: 2, IPFamily: lab.Dual})
	st := e.lab.State()
	sock, birdLog := e.startBIRD(t)
	e.peerRacksWithBIRD()
	c1, c2 := e.run("c1", "h1"), e.run("c2", "h2") // rack 1, rack 2
	for _, c := range []*lab.Container{c1, c2} {
		if !c.IP6().IsValid() {
			t.Fatalf("%s: got addresses %v, want an IPv6 one too", c.Name, c.IPs)
		}
	}

	deadline := time.Now().Add(labWait)
	for {
		out, _ := exec.Command("birdc", "-s", sock, "show", "route", "table", "master6").CombinedOutput()
		missing := ""
		for _, c := range []*lab.Container{c1, c2} {
			h := e.host(c.Node)
			if !regexp.MustCompile(regexp.QuoteMeta(block6(c)) + `[^\n]*\n\s+via ` + regexp.QuoteMeta(h.IP6.Addr().String())).Match(out) {
				missing += fmt.Sprintf(" %s via %s;", block6(c), h.IP6.Addr())
			}
		}
		if missing == "" {
			t.Logf("BIRD's IPv6 table:\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			proto, _ := exec.Command("birdc", "-s", sock, "show", "protocols").CombinedOutput()
			t.Fatalf("BIRD's IPv6 table lacks%s\n%s\n%s\nbird log:\n%s", missing, out, proto, birdLog.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.waitPeersUp("h1", 2) // the rack 1 router, over IPv4 and over IPv6
	e.waitRoute("h1", true, "blackhole", block6(c1))
	e.waitRoute("h1", true, block6(c2), "via "+st.Racks[0].Gateway6.String())
	e.waitRoute("h2", true, block6(c1), "via "+st.Racks[1].Gateway6.String())
	e.reach6(c1, c2)
	e.reach6(c2, c1)
	e.reach(c1, c2)
	text := e.statusText("h1")
	for _, want := range []string{"IPv6 BGP status", st.Racks[0].Gateway6.String(), "Established"} {
		if !strings.Contains(text, want) {
			t.Errorf("tabby node status on h1 lacks %q:\n%s", want, text)
		}
	}
}

// birdReflectorConfig makes BIRD in the router an iBGP route reflector
// (the cluster's AS 64512) for every node, over IPv4 and IPv6 sessions,
// with itself as next hop (it exports what it learns to its kernel, so it
// forwards between the racks).
func birdReflectorConfig(st *lab.State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr all;\nrouter id %s;\n", st.Router.Legs[0].IP.Addr())
	b.WriteString("protocol device { scan time 10; }\n")
	b.WriteString("protocol kernel { ipv4 { import none; export all; }; }\n")
	b.WriteString("protocol kernel { ipv6 { import none; export all; }; }\n")
	b.WriteString("template bgp rr4 { local as 64512; direct; rr client; graceful restart on; ipv4 { import all; export all; next hop self; }; }\n")
	b.WriteString("template bgp rr6 { local as 64512; direct; rr client; graceful restart on; ipv6 { import all; export all; next hop self; }; }\n")
	for _, n := range st.AgentNodes() {
		fmt.Fprintf(&b, "protocol bgp %s from rr4 { neighbor %s as 64512; }\n", n.Name, n.IP.Addr())
		fmt.Fprintf(&b, "protocol bgp %s_6 from rr6 { neighbor %s as 64512; }\n", n.Name, n.IP6.Addr())
	}
	return b.String()
}

// TestPrivilegedLabBIRDRouteReflectorDualStack: BIRD 2 in the router is
// the route reflector of every node (iBGP, mesh off), over IPv4 and IPv6:
// BIRD's IPv6 table holds each node's IPv6 block from the node, the nodes
// learn the other rack's IPv6 block reflected (next hop the router), and
// containers across racks reach each other by ping -6 and TCP over IPv6.
func TestPrivilegedLabBIRDRouteReflectorDualStack(t *testing.T) {
	e := up(t, lab.Config{Name: "rf", Nodes: 2, Racks: 2, IPFamily: lab.Dual})
	st := e.lab.State()
	sock, birdLog := e.startBIRDWith(t, birdReflectorConfig(st))
	off := false
	e.apply(&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}})
	for r := 1; r <= st.NRacks; r++ {
		sel := fmt.Sprintf("rack == 'r%d'", r)
		for i, gw := range []netip.Addr{st.Racks[r-1].Gateway, st.Racks[r-1].Gateway6} {
			e.apply(&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("rack%d-rr-%d", r, i)}, Spec: api.BGPPeerSpec{
				NodeSelector: sel, PeerIP: gw.String(), ASNumber: 64512}})
		}
	}
	for _, n := range st.AgentNodes() {
		e.updateNode(n.Name, func(node *api.Node) {
			if node.Labels == nil {
				node.Labels = map[string]string{}
			}
			node.Labels["rack"] = fmt.Sprintf("r%d", n.Rack)
		})
	}
	c1, c2 := e.run("c1", "h1"), e.run("c2", "h2") // rack 1, rack 2
	deadline := time.Now().Add(labWait)
	for {
		out, _ := exec.Command("birdc", "-s", sock, "show", "route", "table", "master6").CombinedOutput()
		missing := ""
		for _, c := range []*lab.Container{c1, c2} {
			h := e.host(c.Node)
			if !regexp.MustCompile(regexp.QuoteMeta(block6(c)) + `[^\n]*\n\s+via ` + regexp.QuoteMeta(h.IP6.Addr().String())).Match(out) {
				missing += fmt.Sprintf(" %s via %s;", block6(c), h.IP6.Addr())
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			proto, _ := exec.Command("birdc", "-s", sock, "show", "protocols").CombinedOutput()
			t.Fatalf("BIRD's IPv6 table lacks%s\n%s\n%s\nbird log:\n%s", missing, out, proto, birdLog.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	st1 := e.waitPeersUp("h1", 2) // the reflector, over IPv4 and over IPv6
	for _, p := range st1.Peers {
		if p.Address != st.Racks[0].Gateway.String() && p.Address != st.Racks[0].Gateway6.String() {
			t.Errorf("h1 peers with %+v, want only the reflector's rack 1 addresses", p)
		}
	}
	e.waitRoute("h1", true, block6(c2), "via "+st.Racks[0].Gateway6.String())
	e.waitRoute("h2", true, block6(c1), "via "+st.Racks[1].Gateway6.String())
	e.reach6(c1, c2)
	e.reach6(c2, c1)
	e.reach(c1, c2)
}

// TestPrivilegedLabVXLAN: VXLAN CrossSubnet across racks (direct within a
// rack), and VXLAN Always; the containers' MTU leaves room for the header.
func TestPrivilegedLabVXLAN(t *testing.T) {
	t.Run("cross subnet", func(t *testing.T) {
		e := up(t, lab.Config{Name: "rx", Nodes: 4, Racks: 2, Encap: "vxlan-crosssubnet"})
		c1, c2, c3 := e.run("c1", "h1"), e.run("c2", "h2"), e.run("c3", "h3")
		h2, h3 := e.host("h2"), e.host("h3")
		if h3.Rack != e.host("h1").Rack || h2.Rack == h3.Rack {
			t.Fatalf("racks: h1 %d, h2 %d, h3 %d; want h1 and h3 together", e.host("h1").Rack, h2.Rack, h3.Rack)
		}
		e.waitRoute("h1", true, block(c3), "via "+h3.IP.Addr().String())
		e.waitRoute("h1", true, block(c2), "dev vxlan.tabby", "onlink")
		e.reach(c1, c2)
		e.reach(c2, c1)
		e.reach(c1, c3)
		checkMTU(t, e, c1, 50)
	})
	t.Run("always", func(t *testing.T) {
		e := up(t, lab.Config{Name: "rv", Nodes: 2, Encap: "vxlan"})
		c1, c2 := e.run("c1", "h1"), e.run("c2", "h2")
		e.waitRoute("h1", true, block(c2), "dev vxlan.tabby", "onlink")
		e.reach(c1, c2)
		e.reach(c2, c1)
		checkMTU(t, e, c1, 50)
	})
}

// TestPrivilegedLabVXLANDualStack: in a dual-stack lab with both pools in
// vxlanMode CrossSubnet, IPv6 rides vxlan.tabby across racks (the router
// between racks knows no block, so nothing else could carry it): the host's
// IPv6 route to the other rack's block goes through vxlan.tabby via the
// peer's link-local address, whose permanent neighbor entry is there, and
// the device counts the packets of a ping -6; within a rack IPv6 is routed
// natively via the peer's IPv6 address. ping -6 and TCP work both ways.
func TestPrivilegedLabVXLANDualStack(t *testing.T) {
	e := up(t, lab.Config{Name: "r6", Nodes: 3, Racks: 2, IPFamily: lab.Dual, Encap: "vxlan-crosssubnet"})
	c1, c2, c3 := e.run("c1", "h1"), e.run("c2", "h2"), e.run("c3", "h3")
	h1, h2, h3 := e.host("h1"), e.host("h2"), e.host("h3")
	if h3.Rack != h1.Rack || h2.Rack == h1.Rack {
		t.Fatalf("racks: h1 %d, h2 %d, h3 %d; want h1 and h3 together", h1.Rack, h2.Rack, h3.Rack)
	}
	for _, c := range []*lab.Container{c1, c2, c3} {
		if !c.IP6().IsValid() {
			t.Fatalf("%s: got addresses %v, want an IPv6 one too", c.Name, c.IPs)
		}
	}
	e.waitRoute("h1", true, block6(c3), "via "+h3.IP6.Addr().String())
	e.waitRoute("h1", true, block6(c2), "via fe80::", "dev vxlan.tabby")
	e.waitRoute("h2", true, block6(c1), "via fe80::", "dev vxlan.tabby")
	e.waitRoute("h1", true, block(c2), "dev vxlan.tabby", "onlink")
	neigh, err := e.on("h1", "ip", "-6", "neigh", "show", "dev", "vxlan.tabby")
	if err != nil || !regexp.MustCompile(`fe80::\S+ lladdr \S+ PERMANENT`).MatchString(neigh) {
		t.Errorf("IPv6 neighbors of vxlan.tabby on h1: got %q (%v), want the peer's link-local address, permanent", neigh, err)
	}
	e.reach6(c1, c2)
	e.reach6(c2, c1)
	e.reach6(c1, c3)
	e.reach6(c3, c2)
	e.reach(c1, c2)
	before := vxlanTx(t, e, "h1")
	if out, err := e.in(c1, "ping", "-6", "-c", "5", "-i", "0.2", "-W", "2", "-q", c2.IP6().String()); err != nil {
		t.Fatalf("ping -6 c1 → c2: %v\n%s", err, out)
	}
	if d := vxlanTx(t, e, "h1") - before; d < 5 {
		t.Errorf("vxlan.tabby on h1 sent %d packets during 5 IPv6 echoes across racks, want at least 5 (encapsulated)", d)
	}
	checkMTU(t, e, c1, 50)
}

// TestPrivilegedLabVXLANIPv6Only: an ipv6 lab (no IPv4 pool, so no IPv4
// tunnel address) with the IPv6 pool in vxlanMode Always across racks: the
// nodes get a VXLAN MAC only, vxlan.tabby has no IPv4 address, and IPv6
// crosses the racks through it.
func TestPrivilegedLabVXLANIPv6Only(t *testing.T) {
	e := up(t, lab.Config{Name: "r7", Nodes: 2, Racks: 2, IPFamily: lab.IPv6, Encap: "vxlan"})
	c1, c2 := e.run("c1", "h1"), e.run("c2", "h2")
	e.waitRoute("h1", true, block6(c2), "via fe80::", "dev vxlan.tabby")
	e.waitRoute("h2", true, block6(c1), "via fe80::", "dev vxlan.tabby")
	if out, err := e.on("h1", "ip", "-4", "addr", "show", "dev", "vxlan.tabby"); err != nil || strings.Contains(out, "inet ") {
		t.Errorf("vxlan.tabby on h1: got IPv4 addresses %q (%v), want none (no IPv4 pool)", out, err)
	}
	if st, err := e.status("h1"); err != nil {
		t.Error(err)
	} else if !strings.HasPrefix(st.VXLAN, "vxlan.tabby ") || strings.Contains(st.VXLAN, "invalid") {
		t.Errorf("tabby node status on h1: vxlan %q, want the device and its MAC (no IPv4 address)", st.VXLAN)
	}
	e.reach6(c1, c2)
	e.reach6(c2, c1)
	before := vxlanTx(t, e, "h2")
	if out, err := e.in(c2, "ping", "-6", "-c", "5", "-i", "0.2", "-W", "2", "-q", c1.IP6().String()); err != nil {
		t.Fatalf("ping -6 c2 → c1: %v\n%s", err, out)
	}
	if d := vxlanTx(t, e, "h2") - before; d < 5 {
		t.Errorf("vxlan.tabby on h2 sent %d packets during 5 IPv6 echoes, want at least 5 (encapsulated)", d)
	}
}

// vxlanTx is the number of packets vxlan.tabby on node has sent.
func vxlanTx(t *testing.T, e *env, node string) uint64 {
	t.Helper()
	out, err := e.on(node, "ip", "-j", "-s", "link", "show", "dev", "vxlan.tabby")
	var links []struct {
		Stats struct {
			TX struct {
				Packets uint64 `json:"packets"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err != nil || json.Unmarshal([]byte(out), &links) != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link show vxlan.tabby on %s: %v\n%s", node, err, out)
	}
	return links[0].Stats.TX.Packets
}

// checkMTU: the container's MTU is its host uplink's minus overhead.
func checkMTU(t *testing.T, e *env, c *lab.Container, overhead int) {
	t.Helper()
	uplink, err := e.on(c.Node, "ip", "-o", "link", "show", e.lab.Name()+lab.UplinkSuffix)
	if err != nil {
		t.Fatalf("uplink of %s: %v\n%s", c.Node, err, uplink)
	}
	inner, err := e.in(c, "ip", "-o", "link", "show", "eth0")
	if err != nil {
		t.Fatalf("eth0 of %s: %v\n%s", c.Name, err, inner)
	}
	mtu := func(s string) int {
		m := regexp.MustCompile(` mtu (\d+)`).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("no mtu in %q", s)
		}
		var n int
		fmt.Sscan(m[1], &n)
		return n
	}
	if got, want := mtu(inner), mtu(uplink)-overhead; got != want {
		t.Errorf("container %s MTU %d, want %d (uplink %d - %d)", c.Name, got, want, mtu(uplink), overhead)
	}
}

// TestPrivilegedLabIPIP runs IP-in-IP between racks where the kernel has
// it. This kernel may lack the ipip module: then the test is skipped and
// says so (it does not pass); TestPrivilegedLabIPIPUnsupported checks that
// Tabby reports the missing support plainly instead.
func TestPrivilegedLabIPIP(t *testing.T) {
	requireRoot(t)
	if ok, why := kernelHasIPIP(t); !ok {
		t.Skipf("SKIP, NOT A PASS: this kernel cannot create IP-in-IP devices (%s); IP-in-IP traffic is untested here", why)
	}
	for _, mode := range []string{"ipip", "ipip-crosssubnet"} {
		t.Run(mode, func(t *testing.T) {
			e := up(t, lab.Config{Name: "ri", Nodes: 4, Racks: 2, Encap: mode})
			c1, c2, c3 := e.run("c1", "h1"), e.run("c2", "h2"), e.run("c3", "h3")
			e.waitRoute("h1", true, block(c2), "dev tunl0", "onlink")
			if mode == "ipip-crosssubnet" {
				e.waitRoute("h1", true, block(c3), "via "+e.host("h3").IP.Addr().String())
			} else {
				e.waitRoute("h1", true, block(c3), "dev tunl0")
			}
			e.reach(c1, c2)
			e.reach(c2, c1)
			e.reach(c1, c3)
			checkMTU(t, e, c1, 20)
		})
	}
}

// TestPrivilegedLabIPIPUnsupported: on a kernel without ipip, an IP-in-IP
// pool is reported as not working (in `tabby node status`), not silently
// broken.
func TestPrivilegedLabIPIPUnsupported(t *testing.T) {
	requireRoot(t)
	if ok, _ := kernelHasIPIP(t); ok {
		t.Skip("this kernel has IP-in-IP; TestPrivilegedLabIPIP covers it")
	}
	e := up(t, lab.Config{Name: "rn", Nodes: 2, Encap: "ipip"})
	deadline := time.Now().Add(labWait)
	for {
		text := e.statusText("h1")
		if strings.Contains(text, "no IP-in-IP support") {
			t.Logf("tabby node status on h1:\n%s", text)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tabby node status does not report the missing IP-in-IP support:\n%s", text)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
