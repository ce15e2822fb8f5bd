package router_test

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/routingtest"
	"github.com/tabbynet/tabby/internal/api"
)

// TestPrivilegedMesh: three hosts in a full mesh; containers on every pair
// reach each other (ICMP and TCP); a router restart during a fast ping
// loses nothing; a host that leaves has its routes withdrawn everywhere.
func TestPrivilegedMesh(t *testing.T) {
	c := newCluster(t)
	c.create(ipPool("default", "10.244.0.0/16", "Never", "Never"))
	h1 := c.addHost("h1", "192.0.2.11/24", nil)
	h2 := c.addHost("h2", "192.0.2.12/24", nil)
	h3 := c.addHost("h3", "192.0.2.13/24", nil)
	for _, h := range []*host{h1, h2, h3} {
		c.start(h, hostConfig{})
	}
	n1, a1 := c.container(h1)
	n2, a2 := c.container(h2)
	n3, a3 := c.container(h3)
	c.waitRoute(h1, blockOf(a2).String()+" via 192.0.2.12", true)
	c.waitRoute(h1, blockOf(a3).String()+" via 192.0.2.13", true)
	c.waitRoute(h2, blockOf(a1).String()+" via 192.0.2.11", true)
	c.waitRoute(h3, blockOf(a1).String()+" via 192.0.2.11", true)
	c.waitRoute(h1, "blackhole "+blockOf(a1).String(), true)
	c.reach(n1, n2, a2)
	c.reach(n2, n3, a3)
	c.reach(n3, n1, a1)

	st, err := c.status(h1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 2 || st.Peers[0].Type != "node-to-node mesh" || st.Peers[0].State != "up" {
		t.Errorf("h1 peers %+v, want two established mesh sessions", st.Peers)
	}

	t.Run("restart loses no packets", func(t *testing.T) {
		ping := exec.Command("ip", "netns", "exec", n1, "ping", "-i", "0.01", "-c", "1500", "-W", "1", "-q", a2.String())
		out := &strings.Builder{}
		ping.Stdout, ping.Stderr = out, out
		if err := ping.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		c.stop(h2, syscall.SIGTERM)
		c.start(h2, hostConfig{})
		if err := ping.Wait(); err != nil {
			t.Fatalf("ping during the restart: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out.String())
		if m == nil || m[1] != m[2] {
			t.Errorf("packets lost while h2's router restarted:\n%s", out)
		}
		t.Logf("ping during the restart: %s", strings.TrimSpace(out.String()))
	})

	t.Run("host leaving", func(t *testing.T) {
		c.stop(h3, syscall.SIGTERM)
		if _, err := c.client.Delete(context.Background(), "Node", "", "h3", ""); err != nil {
			t.Fatal(err)
		}
		c.waitRoute(h1, blockOf(a3).String(), false)
		c.waitRoute(h2, blockOf(a3).String(), false)
		c.reach(n1, n2, a2)
	})
}

// TestPrivilegedRouteReflector: mesh off, one host is a route reflector
// (BGPPeer selecting it for every node); the others reach each other with
// the reflected routes.
func TestPrivilegedRouteReflector(t *testing.T) {
	c := newCluster(t)
	off := false
	c.create(ipPool("default", "10.244.0.0/16", "Never", "Never"),
		&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}},
		&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: "peer-with-rr"}, Spec: api.BGPPeerSpec{NodeSelector: "all()", PeerSelector: "route-reflector == 'true'"}})
	h1 := c.addHost("h1", "192.0.2.11/24", nil)
	h2 := c.addHost("h2", "192.0.2.12/24", nil)
	rr := c.addHost("rr", "192.0.2.20/24", func(n *api.Node) {
		n.Labels = map[string]string{"route-reflector": "true"}
		n.Spec.BGP.RouteReflectorClusterID = "224.0.0.1"
	})
	for _, h := range []*host{h1, h2, rr} {
		c.start(h, hostConfig{})
	}
	n1, a1 := c.container(h1)
	n2, a2 := c.container(h2)
	c.waitRoute(h1, blockOf(a2).String()+" via 192.0.2.12", true)
	c.waitRoute(h2, blockOf(a1).String()+" via 192.0.2.11", true)
	c.reach(n1, n2, a2)
	c.reach(n2, n1, a1)
	st, err := c.status(h1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 1 || st.Peers[0].Address != "192.0.2.20" || st.Peers[0].Type != "route reflector" {
		t.Errorf("h1 peers %+v, want only the route reflector", st.Peers)
	}
}

// TestPrivilegedVXLANWithoutBGP: a VXLAN pool works with no BGP at all —
// the routers allocate tunnel addresses and route from the datastore.
func TestPrivilegedVXLANWithoutBGP(t *testing.T) {
	c := newCluster(t)
	c.create(ipPool("default", "10.244.0.0/16", "Never", "Always"))
	h1 := c.addHost("h1", "192.0.2.11/24", nil)
	h2 := c.addHost("h2", "192.0.2.12/24", nil)
	for _, h := range []*host{h1, h2} {
		c.start(h, hostConfig{DisableBGP: true})
	}
	n1, a1 := c.container(h1)
	n2, a2 := c.container(h2)
	c.waitRoute(h1, blockOf(a2).String()+" via", true)
	c.waitRoute(h1, "dev vxlan.tabby onlink", true)
	c.waitRoute(h2, blockOf(a1).String()+" via", true)
	c.reach(n1, n2, a2)
	c.reach(n2, n1, a1)
	out := routingtest.IP(t, "-n", h1.ns, "-d", "link", "show", "vxlan.tabby")
	if !strings.Contains(out, "vxlan id 4096") || !strings.Contains(out, "dstport 4789") {
		t.Errorf("vxlan.tabby on h1:\n%s", out)
	}
	if st, err := c.status(h1); err != nil || len(st.Peers) != 0 {
		t.Errorf("h1 has BGP peers without BGP: %+v %v", st, err)
	}

	// CrossSubnet on one subnet: the same routes without the tunnel.
	p, err := c.client.Get(context.Background(), "IPPool", "", "default")
	if err != nil {
		t.Fatal(err)
	}
	p.(*api.IPPool).Spec.VXLANMode = api.EncapCrossSubnet
	if _, err := c.client.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	c.waitRoute(h1, fmt.Sprintf("%s via 192.0.2.12 dev eth0", blockOf(a2)), true)
	c.reach(n1, n2, a2)
}
