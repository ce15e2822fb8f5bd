package router_test

import (
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/routingtest"
	"github.com/tabbynet/tabby/internal/api"
)

// waitBFD waits until h's session to peer shows BFD state want.
func (c *cluster) waitBFD(h *host, peer, want string) {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		st, err := c.status(h)
		if err == nil {
			for _, p := range st.Peers {
				if p.Address == peer && p.BFD == want {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("host %s: BFD of peer %s is not %q after %s; status %+v (err %v)", h.name, peer, want, clusterWait, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// peerSince is when h's session to peer came up (it must be up).
func (c *cluster) peerSince(h *host, peer string) time.Time {
	c.t.Helper()
	st, err := c.status(h)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Address == peer && p.State == "up" {
			return p.Since
		}
	}
	c.t.Fatalf("host %s: no established session to %s: %+v", h.name, peer, st.Peers)
	return time.Time{}
}

func meshBFD(rx, tx, mult int64) *api.BGPConfiguration {
	return &api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{
		NodeMeshBFD: &api.BFD{Enabled: true, MinRxMs: &rx, MinTxMs: &tx, Multiplier: &mult}}}
}

// TestPrivilegedBFDMesh: BFD on the node-to-node mesh, switched on while
// the routers run, comes up; a host whose link is
// cut has its routes withdrawn on the others by BFD — the wait for it
// (clusterWait, 60 s) is shorter than the hold time (90 s), after which
// the routes would go without BFD; when the link is back the routes
// return; a router restart with BFD on loses no packets (graceful restart
// still keeps the restarting host's routes).
func TestPrivilegedBFDMesh(t *testing.T) {
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
	_, a3 := c.container(h3)
	c.waitRoute(h1, blockOf(a2).String()+" via 192.0.2.12", true)
	c.waitRoute(h1, blockOf(a3).String()+" via 192.0.2.13", true)
	c.waitRoute(h3, blockOf(a2).String()+" via 192.0.2.12", true)
	c.waitRoute(h2, blockOf(a1).String()+" via 192.0.2.11", true)

	// Live: BFD switched on in the running cluster (the sessions are
	// re-made with it).
	c.create(meshBFD(100, 100, 3))
	for _, p := range []string{"192.0.2.12", "192.0.2.13"} {
		c.waitBFD(h1, p, "Up")
	}
	c.waitBFD(h3, "192.0.2.12", "Up")
	c.waitRoute(h1, blockOf(a2).String()+" via 192.0.2.12", true)
	c.waitRoute(h2, blockOf(a1).String()+" via 192.0.2.11", true)

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
		c.waitBFD(h1, "192.0.2.12", "Up")
		c.waitRoute(h1, blockOf(a2).String()+" via 192.0.2.12", true)
		// The session stays up after the restart (no late reset).
		since := c.peerSince(h1, "192.0.2.12")
		time.Sleep(3 * time.Second)
		if got := c.peerSince(h1, "192.0.2.12"); !got.Equal(since) {
			t.Errorf("h1's session to h2 was reset after the restart: up since %s, was %s", got, since)
		}
	})

	t.Run("link cut", func(t *testing.T) {
		routingtest.IP(t, "-n", c.fabric, "link", "set", "h2", "down")
		c.waitRoute(h1, blockOf(a2).String(), false)
		c.waitRoute(h3, blockOf(a2).String(), false)
		c.waitBFD(h1, "192.0.2.12", "Down")
		routingtest.IP(t, "-n", c.fabric, "link", "set", "h2", "up")
		c.waitBFD(h1, "192.0.2.12", "Up")
		c.waitRoute(h1, blockOf(a2).String()+" via 192.0.2.12", true)
		c.reach(n1, n2, a2)
	})
}

// birdBFDConf peers BIRD (AS 65000, 192.0.2.1) with h1 over eBGP with
// graceful restart and BFD at 100 ms × 3, and originates one prefix in
// the pool.
const birdBFDConf = `log stderr all;
router id 192.0.2.1;
protocol device { scan time 10; }
protocol static {
	ipv4;
	route 10.244.250.0/24 blackhole;
}
protocol bfd {
	interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
protocol bgp h1 {
	local 192.0.2.1 as 65000;
	neighbor 192.0.2.11 as 64512;
	graceful restart on;
	bfd on;
	# BIRD holds a session that failed (BFD down counts) in Idle for its
	# error wait time, 60 s by default, refusing h1's reconnects: short
	# here, so the test measures Tabby and not BIRD's back-off.
	error wait time 1, 5;
	connect retry time 1;
	ipv4 { import all; export all; };
}
`

// waitBIRD waits until BIRD's `show <what>` output contains (or, with
// present false, lacks) want.
func waitBIRD(t *testing.T, sock, what, want string, present bool) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		out := birdc(t, sock, "show", what)
		if strings.Contains(out, want) == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD's show %s: %q present=%v not reached in %s:\n%s\n%s", what, want, !present, clusterWait, out, birdc(t, sock, "show", "protocols", "all"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPrivilegedBFDWithBIRD: a BGPPeer with BFD against BIRD 2's
// `protocol bfd`: the BFD session comes up on both ends; when h1's link
// is cut, each side withdraws the other's routes — within clusterWait
// (60 s), shorter than the hold time (90 s), so by BFD — and after the
// link is back the routes return.
func TestPrivilegedBFDWithBIRD(t *testing.T) {
	c := newCluster(t)
	off := false
	rx, tx, mult := int64(100), int64(100), int64(3)
	c.create(ipPool("default", "10.244.0.0/16", "Never", "Never"),
		&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}},
		&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: "tor"}, Spec: api.BGPPeerSpec{PeerIP: "192.0.2.1", ASNumber: 65000,
			BFD: &api.BFD{Enabled: true, MinRxMs: &rx, MinTxMs: &tx, Multiplier: &mult}}})
	r := routingtest.NewNS(t, "tbyrr-"+c.s)
	c.attach(r, "r", "192.0.2.1/24")
	sock := startBIRD(t, r, c.dir, birdBFDConf)

	h1 := c.addHost("h1", "192.0.2.11/24", nil)
	c.start(h1, hostConfig{})
	_, a1 := c.container(h1)
	waitBIRD(t, sock, "route", blockOf(a1).String(), true)
	c.waitRoute(h1, "10.244.250.0/24 via 192.0.2.1", true)
	waitBIRD(t, sock, "bfd sessions", "Up", true)
	c.waitBFD(h1, "192.0.2.1", "Up")

	routingtest.IP(t, "-n", c.fabric, "link", "set", "h1", "down")
	waitBIRD(t, sock, "route", blockOf(a1).String(), false)
	c.waitRoute(h1, "10.244.250.0/24", false)
	c.waitBFD(h1, "192.0.2.1", "Down")

	routingtest.IP(t, "-n", c.fabric, "link", "set", "h1", "up")
	waitBIRD(t, sock, "route", blockOf(a1).String(), true)
	c.waitRoute(h1, "10.244.250.0/24 via 192.0.2.1", true)
	c.waitBFD(h1, "192.0.2.1", "Up")
}
