package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

func wepFor(c *container, labels map[string]string, profiles ...string) *api.WorkloadEndpoint {
	return WEP(Node, "default", c.name, c.ifName, []string{c.addr.String() + "/32"}, labels, profiles...)
}

// labState is a cluster made of the lab's containers on network "calico".
func labState(eps ...*api.WorkloadEndpoint) *policy.State {
	return &policy.State{
		Node:      Node,
		Endpoints: eps,
		Profiles:  []*api.Profile{CNIProfile("calico"), AllowAllProfile("open")},
		Pools:     []*api.IPPool{Pool("default", "10.65.0.0/16", false)},
	}
}

// TestPrivilegedAntiSpoofing: a container sending from an address that is
// not its own — another container's, or an unused one — is dropped; the
// same packet from its own address goes through.
func TestPrivilegedAntiSpoofing(t *testing.T) {
	l := newLab(t)
	a := l.addContainer("a", "10.65.0.2")
	b := l.addContainer("b", "10.65.0.3")
	c := l.addContainer("c", "10.65.0.4")
	port, seen := sinkUDP(t, c.ns, c.addr.String())
	// a also configures b's address and an unused one, as a forger would.
	in(t, a.ns, func() error {
		if err := addAddr("eth0", "10.65.0.3/32"); err != nil {
			return err
		}
		return addAddr("eth0", "10.65.0.99/32")
	})
	send := func(src, msg string) {
		t.Helper()
		in(t, a.ns, func() error { return sendUDP(src, c.addr.String(), port, msg) })
	}
	// arrived sends msg from src (three times), then a marker from a's own
	// address, and reports whether msg arrived before the marker did.
	marker := 0
	arrived := func(src, msg string) bool {
		t.Helper()
		for range 3 {
			send(src, msg)
		}
		marker++
		m := fmt.Sprintf("marker-%d", marker)
		end := time.Now().Add(okDeadline)
		for time.Now().Before(end) {
			send(a.addr.String(), m)
			got := seen()
			if slices.Contains(got, a.addr.String()+" "+m) {
				return slices.Contains(got, src+" "+msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("the marker from a's own address never arrived")
		return false
	}

	// Warm the path up (neighbour entries on both hops): packets sent
	// while they resolve may be lost, which would prove nothing.
	arrived(a.addr.String(), "warm-up")
	// Without Tabby's table the kernel forwards forged packets (rp_filter
	// is off in the lab): the test can tell.
	if !arrived("10.65.0.99", "forged-1") {
		t.Fatal("a forged packet did not arrive even without Tabby's table")
	}

	s := labState(wepFor(a, nil, "calico"), wepFor(b, nil, "calico"), wepFor(c, nil, "calico"))
	mustApply(t, l.d, mustCompile(t, s))
	if !arrived(a.addr.String(), "own") {
		t.Error("a packet from a's own address did not arrive")
	}
	if arrived(b.addr.String(), "forged-2") {
		t.Error("a packet with another workload's source address arrived")
	}
	if arrived("10.65.0.99", "forged-3") {
		t.Error("a packet with an unused source address arrived")
	}
}

// TestPrivilegedPolicyTraffic: policies allow and deny real TCP and UDP
// connections; tightening a policy stops new connections at once while
// established ones continue; deleting an endpoint flushes its flows.
func TestPrivilegedPolicyTraffic(t *testing.T) {
	l := newLab(t)
	web := l.addContainer("web", "10.65.0.2")
	db := l.addContainer("db", "10.65.0.3")
	other := l.addContainer("other", "10.65.0.4")
	p1 := serveTCP(t, db.ns, db.addr.String())
	p2 := serveTCP(t, db.ns, db.addr.String())
	pu := serveUDP(t, db.ns, db.addr.String())
	tcp := func(from *container, port uint16) func(time.Duration) (string, error) {
		return func(d time.Duration) (string, error) { return tcpAsk(from.ns, db.addr.String(), port, d) }
	}
	udp := func(from *container) func(time.Duration) (string, error) {
		return func(d time.Duration) (string, error) { return udpAsk(from.ns, "", db.addr.String(), pu, d) }
	}

	eps := []*api.WorkloadEndpoint{
		wepFor(web, map[string]string{"app": "web"}, "calico"),
		wepFor(db, map[string]string{"app": "db"}, "calico"),
		wepFor(other, map[string]string{"app": "other"}, "calico"),
	}
	s := labState(eps...)

	// Profiles only: the network's members reach each other.
	mustApply(t, l.d, mustCompile(t, s))
	mustReach(t, "web → db tcp, profile", tcp(web, p1))
	mustReach(t, "other → db tcp, profile", tcp(other, p2))
	mustReach(t, "web → db udp, profile", udp(web))

	// A policy selects db: only what it allows gets in.
	allowWeb := api.Rule{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Selector: "app == 'web'"},
		Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(p1)}}}
	s.Policies = []*api.NetworkPolicy{NP("default", "db", 1, "app == 'db'", []api.Rule{allowWeb}, nil)}
	mustApply(t, l.d, mustCompile(t, s))
	if got := mustReach(t, "web → db:p1 allowed", tcp(web, p1)); got != web.addr.String() {
		t.Errorf("db saw %s, want %s", got, web.addr)
	}
	mustNotReach(t, "web → db:p2 not allowed", tcp(web, p2))
	mustNotReach(t, "other → db:p1 wrong source", tcp(other, p1))
	mustNotReach(t, "web → db udp not allowed", udp(web))

	// Allow UDP too (a protocol number this time).
	s.Policies[0].Spec.Ingress = append(s.Policies[0].Spec.Ingress, api.Rule{Action: "Allow", Protocol: Proto("17"),
		Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(pu)}}})
	mustApply(t, l.d, mustCompile(t, s))
	mustReach(t, "web → db udp allowed", udp(web))

	// A Deny in an earlier policy wins over the later allow.
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{GNP("deny-udp", 0, "app == 'db'", []api.Rule{{Action: "Deny", Protocol: Proto("UDP")}, {Action: "Pass"}}, nil)}
	mustApply(t, l.d, mustCompile(t, s))
	mustNotReach(t, "web → db udp denied first", udp(web))
	mustReach(t, "web → db:p1 passed on", tcp(web, p1))
	s.GlobalPolicies = nil

	// Egress: web may only reach p1.
	s.Policies = append(s.Policies, NP("default", "web-out", 1, "app == 'web'", nil,
		[]api.Rule{{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(p1)}}}}))
	mustApply(t, l.d, mustCompile(t, s))
	mustReach(t, "web → db:p1 egress allowed", tcp(web, p1))
	mustNotReach(t, "web → db udp egress denied", udp(web))
	s.Policies = s.Policies[:1]
	mustApply(t, l.d, mustCompile(t, s))

	// An established connection survives tightening; new ones stop.
	var conn *persistentConn
	in(t, web.ns, func() (err error) { conn, err = dialPersistent(db.addr.String(), p1); return err })
	defer conn.Close()
	if err := conn.ping(); err != nil {
		t.Fatalf("persistent connection: %v", err)
	}
	s.Policies[0].Spec.Ingress = nil
	mustApply(t, l.d, mustCompile(t, s))
	mustNotReach(t, "web → db:p1 after tightening", tcp(web, p1))
	if err := conn.ping(); err != nil {
		t.Errorf("established connection after tightening: %v, want it to continue", err)
	}

	// Deleting web flushes its conntrack entries: the established
	// connection is then treated as new — from an unknown interface — and
	// dropped.
	if n := flowsOf(t, l.host, web.addr); n == 0 {
		t.Fatal("no conntrack entry for web before its deletion")
	}
	s.Endpoints = s.Endpoints[1:]
	mustApply(t, l.d, mustCompile(t, s))
	if got := l.d.LastChange().ConntrackFlushed; len(got) != 1 || got[0] != web.addr {
		t.Errorf("conntrack flushed for %v, want [%s]", got, web.addr)
	}
	if n := flowsOf(t, l.host, web.addr); n != 0 {
		t.Errorf("%d conntrack entries of web left after its deletion", n)
	}
	if err := conn.pingWithin(dropDeadline); err == nil {
		t.Error("the deleted endpoint's connection still works")
	}
}

// flowsOf counts the conntrack entries involving addr in the namespace.
func flowsOf(t *testing.T, ns *testNS, addr netip.Addr) int {
	t.Helper()
	h, err := netlink.NewHandleAt(nsHandle(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	f := addrFilter{addr: {}}
	n := 0
	for _, fl := range flows {
		if f.MatchConntrackFlow(fl) {
			n++
		}
	}
	return n
}

// TestPrivilegedPortMapping: a host port is DNATed to a container, from
// another machine and from the host itself, and stops being when the
// mapping goes away.
func TestPrivilegedPortMapping(t *testing.T) {
	l := newLab(t)
	app := l.addContainer("app", "10.65.0.2")
	port := serveTCP(t, app.ns, app.addr.String())
	w := wepFor(app, map[string]string{"app": "web"}, "calico")
	w.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: "TCP", Port: port, HostPort: 31080}}
	s := labState(w)
	// Let the LAN in: the network's profile only admits its members.
	s.Policies = []*api.NetworkPolicy{NP("default", "lan", 1, "app == 'web'", []api.Rule{
		{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Nets: []string{"192.0.2.0/24"}}, Destination: api.EntityRule{Ports: Ports("http")}},
	}, nil)}
	mustApply(t, l.d, mustCompile(t, s))

	fromExt := func(d time.Duration) (string, error) { return tcpAsk(l.ext.path, hostIP, 31080, d) }
	fromHost := func(d time.Duration) (string, error) { return tcpAsk(l.host.path, hostIP, 31080, d) }
	if got := mustReach(t, "ext → host:31080", fromExt); got != extIP {
		t.Errorf("container saw %s, want %s", got, extIP)
	}
	if got := mustReach(t, "host → host:31080", fromHost); got != hostIP {
		t.Errorf("container saw %s, want %s", got, hostIP)
	}

	s.Endpoints[0].Spec.Ports = nil
	mustApply(t, l.d, mustCompile(t, s))
	mustNotReach(t, "ext → host:31080 after unmapping", fromExt)
	mustNotReach(t, "host → host:31080 after unmapping", fromHost)
}

// TestPrivilegedNATOutgoing: traffic from a natOutgoing pool to outside
// every pool leaves with the host's address.
func TestPrivilegedNATOutgoing(t *testing.T) {
	l := newLab(t)
	a := l.addContainer("a", "10.65.0.2")
	port := serveTCP(t, l.ext.path, extIP)
	s := labState(wepFor(a, nil, "calico"))
	ask := func(d time.Duration) (string, error) { return tcpAsk(a.ns, extIP, port, d) }

	mustApply(t, l.d, mustCompile(t, s))
	if got := mustReach(t, "a → ext, no NAT", ask); got != a.addr.String() {
		t.Errorf("ext saw %s, want %s", got, a.addr)
	}
	s.Pools[0].Spec.NATOutgoing = true
	mustApply(t, l.d, mustCompile(t, s))
	if got := mustReach(t, "a → ext, natOutgoing", ask); got != hostIP {
		t.Errorf("ext saw %s, want the host's %s", got, hostIP)
	}
}

// TestPrivilegedEndpointToHost: workload → host traffic follows
// defaultEndpointToHostAction (after the workload's egress policy).
func TestPrivilegedEndpointToHost(t *testing.T) {
	l := newLab(t)
	a := l.addContainer("a", "10.65.0.2")
	port := serveTCP(t, l.host.path, hostIP)
	ask := func(d time.Duration) (string, error) { return tcpAsk(a.ns, hostIP, port, d) }
	s := labState(wepFor(a, nil, "calico"))

	mustApply(t, l.d, mustCompile(t, s))
	mustNotReach(t, "a → host, default Drop", ask)
	for _, action := range []string{"Accept", "Return"} {
		s.Felix.DefaultEndpointToHostAction = action
		mustApply(t, l.d, mustCompile(t, s))
		mustReach(t, "a → host, "+action, ask)
	}
	// Egress policy still applies first.
	s.Policies = []*api.NetworkPolicy{NP("default", "no-egress", 1, "all()", nil, []api.Rule{{Action: "Deny"}}, "Egress")}
	mustApply(t, l.d, mustCompile(t, s))
	mustNotReach(t, "a → host, egress denied", ask)
}

// TestPrivilegedHostEndpointFailsafe: a host endpoint with no policy
// drops what reaches the host through it, except the failsafe ports.
func TestPrivilegedHostEndpointFailsafe(t *testing.T) {
	l := newLab(t)
	open := serveTCP(t, l.host.path, hostIP)
	s := labState()
	s.HostEndpoints = []*api.HostEndpoint{HEP(Node, "uplink", "up0", map[string]string{"role": "uplink"}, hostIP)}
	s.Felix.FailsafeInboundHostPorts = &[]api.ProtoPort{{Protocol: "tcp", Port: open}}
	closed := serveTCP(t, l.host.path, hostIP)
	ask := func(port uint16) func(time.Duration) (string, error) {
		return func(d time.Duration) (string, error) { return tcpAsk(l.ext.path, hostIP, port, d) }
	}
	mustReach(t, "ext → host, no host endpoint", ask(closed))
	mustApply(t, l.d, mustCompile(t, s))
	mustReach(t, "ext → host failsafe port", ask(open))
	mustNotReach(t, "ext → host other port", ask(closed))

	s.GlobalPolicies = []*api.GlobalNetworkPolicy{GNP("uplink", 1, "role == 'uplink'", []api.Rule{
		{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(closed)}}},
	}, nil, "Ingress")}
	mustApply(t, l.d, mustCompile(t, s))
	mustReach(t, "ext → host port allowed by policy", ask(closed))
}
