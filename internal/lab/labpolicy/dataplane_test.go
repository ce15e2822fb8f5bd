package labpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

// reachCase is one probe from a namespace and whether it must get through.
type reachCase struct {
	what    string
	ns      string
	proto   string
	dst     netip.AddrPort
	allowed bool
}

// expectReach probes until every case has the expected outcome (a
// connection or echo, or none within the probe timeout), or
// expectWithin passes. A TCP reset ("refused") does not count as a
// connection here: these probes target one service.
func expectReach(t testing.TB, cases []reachCase) {
	t.Helper()
	deadline := time.Now().Add(expectWithin)
	for {
		var bad []string
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range cases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := lab.ProbeOnce(context.Background(), lab.ProbeTarget{NS: c.ns, Protocol: c.proto, Dst: c.dst, Timeout: probeTimeout})
				got := o.Allowed && o.Detail != "refused"
				if o.Err != nil || got != c.allowed {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s (%s %s): got allowed=%v (%s%v), want %v", c.what, c.proto, c.dst, got, o.Detail, errOrEmpty(o.Err), c.allowed))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after %s:\n%s", expectWithin, strings.Join(bad, "\n"))
			return
		}
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

// udpSink records the sources of the datagrams a namespace receives on
// a port, by payload.
type udpSink struct {
	pc   net.PacketConn
	mu   sync.Mutex
	seen map[string][]netip.Addr // payload → sources
	wg   sync.WaitGroup
}

func newUDPSink(t testing.TB, ns string, addr netip.AddrPort) *udpSink {
	t.Helper()
	s := &udpSink{seen: map[string][]netip.Addr{}}
	err := netns.Do(netns.Path(ns), func() error {
		var err error
		s.pc, err = net.ListenPacket("udp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := s.pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			ap := from.(*net.UDPAddr).AddrPort()
			s.mu.Lock()
			s.seen[string(buf[:n])] = append(s.seen[string(buf[:n])], ap.Addr().Unmap())
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.pc.Close(); s.wg.Wait() })
	return s
}

func (s *udpSink) got(payload string) []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.seen[payload]...)
}

// sendUDP sends one datagram from src (an address of namespace ns) to dst.
func sendUDP(t testing.TB, ns string, src netip.Addr, dst netip.AddrPort, payload string) {
	t.Helper()
	var pc net.PacketConn
	err := netns.Do(netns.Path(ns), func() error {
		var err error
		pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(src, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("bind to %s in %s: %v", src, ns, err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatalf("send from %s to %s: %v", src, dst, err)
	}
}

// TestPrivilegedAntiSpoofing: a container that adds another address to
// its interface and sends from it is dropped, whether the address is
// another container's, a free one of the pool or one outside it; from
// its own address the same datagrams arrive, on its host and on another.
func TestPrivilegedAntiSpoofing(t *testing.T) {
	requirePrivileged(t)
	w := upWorld(t, lab.Config{Name: uniqueName("ps"), Nodes: 2})
	w.run(
		lab.RunSpec{Name: "sender", Node: "h1"},
		lab.RunSpec{Name: "near", Node: "h1"},
		lab.RunSpec{Name: "far", Node: "h2"},
		lab.RunSpec{Name: "victim", Node: "h2"},
	)
	const port = 9000
	sinks := map[string]*udpSink{}
	for _, n := range []string{"near", "far"} {
		sinks[n] = newUDPSink(t, w.cs[n].NetNS, netip.AddrPortFrom(w.ip(n), port))
	}
	sender := w.cs["sender"]
	own := w.ip("sender")
	pool := w.lab.State().Pool
	free := pool.Addr().Next().Next().Next() // low in the pool, in no host's block in use
	for _, c := range w.cs {
		if c.IP() == free {
			t.Fatalf("address %s is in use by %s; pick another", free, c.Name)
		}
	}
	forged := map[string]netip.Addr{
		"another container's": w.ip("victim"),
		"a free pool":         free,
		"an outside":          netip.MustParseAddr("192.0.2.10"),
	}
	for _, a := range forged {
		cmd, err := w.lab.ContainerCommand(context.Background(), "sender", []string{"ip", "addr", "add", a.String() + "/32", "dev", lab.ContainerIfName})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("add %s to the sender: %v: %s", a, err, out)
		}
	}
	// Only anti-spoofing may drop them: the receivers admit everyone (the
	// default profile alone would drop sources outside the network), and
	// the hosts do not filter by reverse path.
	w.apply(`
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: receivers-open}
spec: {selector: all(), ingress: [{action: Allow}]}`)
	for _, n := range []string{"near", "far"} {
		ln, err := lab.ListenProbe(w.cs[n].NetNS, "tcp", netip.AddrPortFrom(w.ip(n), 81))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	expectReach(t, []reachCase{
		{"another host (outside the network) → near, open", w.node("h2").Namespace, "tcp", netip.AddrPortFrom(w.ip("near"), 81), true},
		{"another host (outside the network) → far, open", w.node("h1").Namespace, "tcp", netip.AddrPortFrom(w.ip("far"), 81), true},
	})
	if out, err := w.nodeOutput("h1", "sysctl", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"); err == nil {
		t.Logf("h1: %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", ", "))
	}

	for round := 0; ; round++ {
		// The forged datagrams first, then one from the real address: once
		// that arrives, the forged ones (sent earlier, same path) would have.
		for what, a := range forged {
			for _, dst := range []string{"near", "far"} {
				sendUDP(t, sender.NetNS, a, netip.AddrPortFrom(w.ip(dst), port), "forged "+what)
			}
		}
		control := fmt.Sprintf("control %d", round)
		for _, dst := range []string{"near", "far"} {
			sendUDP(t, sender.NetNS, own, netip.AddrPortFrom(w.ip(dst), port), control)
		}
		time.Sleep(200 * time.Millisecond)
		arrived := len(sinks["near"].got(control)) > 0 && len(sinks["far"].got(control)) > 0
		if arrived || round == 50 {
			if !arrived {
				t.Fatalf("datagrams from the sender's own address %s never arrived (near: %v, far: %v)", own, sinks["near"].got(control), sinks["far"].got(control))
			}
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	for what, a := range forged {
		for _, dst := range []string{"near", "far"} {
			if got := sinks[dst].got("forged " + what); len(got) > 0 {
				t.Errorf("%s received datagrams from %s address %s: %v (anti-spoofing let them through)", dst, what, a, got)
			}
		}
	}
	for _, dst := range []string{"near", "far"} {
		for _, src := range sinks[dst].got("control 0") {
			if src != own {
				t.Errorf("%s: control datagram from %s, want %s", dst, src, own)
			}
		}
	}
}

// nodeOutput runs a command on a lab node and returns its output.
func (w *world) nodeOutput(node string, argv ...string) (string, error) {
	cmd, err := w.lab.NodeCommand(context.Background(), node, argv)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPrivilegedPortMapping: containers with port mappings (CNI
// portMappings, and Mesos port_mappings) are reachable at hostIP:hostPort
// from a container on another host, from a container on the same host and
// from the host itself; from another host's own address only once a
// policy admits it (the workload's ingress policy applies to DNATed
// traffic); and no longer after CNI DEL.
func TestPrivilegedPortMapping(t *testing.T) {
	requirePrivileged(t)
	w := upWorld(t, lab.Config{Name: uniqueName("pt"), Nodes: 2})
	h1 := w.node("h1").IP.Addr()
	w.run(
		lab.RunSpec{Name: "web", Node: "h1", Labels: []lab.KeyValue{{Key: "app", Value: "web"}}, Ports: []lab.PortMapping{
			{HostPort: 8080, ContainerPort: 80},
			{HostPort: 8053, ContainerPort: 53, Protocol: "udp"},
			{HostPort: 8090, ContainerPort: 80, HostIP: h1.String()},
		}},
		lab.RunSpec{Name: "mweb", Node: "h1", MesosApp: "/pm/web", Ports: []lab.PortMapping{{HostPort: 8081, ContainerPort: 81}}},
		lab.RunSpec{Name: "near", Node: "h1"},
		lab.RunSpec{Name: "far", Node: "h2"},
	)
	for _, l := range []struct {
		c, proto string
		port     uint16
	}{{"web", "tcp", 80}, {"web", "udp", 53}, {"mweb", "tcp", 81}} {
		ln, err := lab.ListenProbe(w.cs[l.c].NetNS, l.proto, netip.AddrPortFrom(w.ip(l.c), l.port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	// The endpoints record the mappings.
	ctx := context.Background()
	for name, want := range map[string][]api.WorkloadEndpointPort{
		"web": {
			{Protocol: "TCP", Port: 80, HostPort: 8080},
			{Protocol: "UDP", Port: 53, HostPort: 8053},
			{Protocol: "TCP", Port: 80, HostPort: 8090, HostIP: h1.String()},
		},
		"mweb": {{Protocol: "TCP", Port: 81, HostPort: 8081}},
	} {
		e, err := w.endpoint(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, e.Spec.Ports); diff != "" {
			t.Errorf("WorkloadEndpoint %s ports (-want +got):\n%s", name, diff)
		}
	}
	far, near := w.cs["far"].NetNS, w.cs["near"].NetNS
	hostNS := func(n string) string { return w.node(n).Namespace }
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(h1, port) }
	expectReach(t, []reachCase{
		{"container on another host → CNI mapping", far, "tcp", at(8080), true},
		{"container on another host → CNI mapping (udp)", far, "udp", at(8053), true},
		{"container on another host → mapping with hostIP", far, "tcp", at(8090), true},
		{"container on another host → Mesos mapping", far, "tcp", at(8081), true},
		{"container on the same host → CNI mapping", near, "tcp", at(8080), true},
		{"container on the same host → Mesos mapping", near, "tcp", at(8081), true},
		{"the host itself → CNI mapping", hostNS("h1"), "tcp", at(8080), true},
		{"the host itself → CNI mapping (udp)", hostNS("h1"), "udp", at(8053), true},
		{"the host itself → Mesos mapping", hostNS("h1"), "tcp", at(8081), true},
		// Another host's own address is not in the network: the
		// workload's profile admits only its members.
		{"another host → CNI mapping, no policy", hostNS("h2"), "tcp", at(8080), false},
	})
	refs := w.apply(`
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: web-from-fabric}
spec:
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, source: {nets: ["{{fabric}}"]}, destination: {ports: [80]}}
  - {action: Allow, source: {selector: has(tabby)}}`)
	time.Sleep(settle)
	expectReach(t, []reachCase{
		{"another host → CNI mapping, admitted by policy", hostNS("h2"), "tcp", at(8080), true},
		{"container on another host → CNI mapping, still", far, "tcp", at(8080), true},
	})
	w.remove(refs)

	// CNI DEL removes the mappings of that container only.
	if err := w.lab.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	delete(w.cs, "web")
	expectReach(t, []reachCase{
		{"container on another host → removed CNI mapping", far, "tcp", at(8080), false},
		{"container on another host → removed CNI mapping (udp)", far, "udp", at(8053), false},
		{"the host itself → removed CNI mapping", hostNS("h1"), "tcp", at(8080), false},
		{"container on another host → Mesos mapping, still", far, "tcp", at(8081), true},
	})
}

// TestPrivilegedWorkloadToHost: a container cannot reach its own host's
// agent, etcd or BGP ports (FelixConfiguration
// defaultEndpointToHostAction Drop, the default), though other hosts can
// and so can the host itself; Accept and Return open it (after the
// container's egress policy); with Return a `*` host endpoint's policy
// decides, failsafe ports included.
func TestPrivilegedWorkloadToHost(t *testing.T) {
	requirePrivileged(t)
	w := upWorld(t, lab.Config{Name: uniqueName("ph"), Nodes: 2})
	w.run(lab.RunSpec{Name: "c1", Node: "h1"}, lab.RunSpec{Name: "c2", Node: "h2"})
	h1 := w.node("h1")
	// An etcd client port on h1 (the lab's etcd runs on the master).
	etcd, err := lab.ListenProbe(h1.Namespace, "tcp", netip.AddrPortFrom(h1.IP.Addr(), lab.EtcdPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	c1, c2 := w.cs["c1"].NetNS, w.cs["c2"].NetNS
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(h1.IP.Addr(), port) }
	agentPort, bgpPort, etcdPort := at(lab.AgentHTTPPort), at(179), at(lab.EtcdPort)

	expectReach(t, []reachCase{
		{"container → its host's agent", c1, "tcp", agentPort, false},
		{"container → its host's BGP", c1, "tcp", bgpPort, false},
		{"container → its host's etcd port", c1, "tcp", etcdPort, false},
		{"container → its host, ping", c1, "icmp", agentPort, false},
		{"container on another host → the agent", c2, "tcp", agentPort, true},
		{"container on another host → the etcd port", c2, "tcp", etcdPort, true},
		{"the host itself → its agent", h1.Namespace, "tcp", agentPort, true},
	})

	for _, tc := range []struct {
		name     string
		manifest string
		want     []reachCase
	}{
		{
			name: "Accept",
			manifest: `
apiVersion: tabby.dev/v1
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}`,
			want: []reachCase{
				{"container → its host's agent", c1, "tcp", agentPort, true},
				{"container → its host's etcd port", c1, "tcp", etcdPort, true},
			},
		},
		{
			name: "Accept after the container's egress policy",
			manifest: `
apiVersion: tabby.dev/v1
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: no-agent}
spec:
  selector: has(tabby)
  egress:
  - {action: Deny, protocol: TCP, destination: {ports: [{{agentPort}}]}}
  - {action: Allow}`,
			want: []reachCase{
				{"container → its host's agent, denied by egress policy", c1, "tcp", agentPort, false},
				{"container → its host's etcd port", c1, "tcp", etcdPort, true},
			},
		},
		{
			name: "Return without host endpoints",
			manifest: `
apiVersion: tabby.dev/v1
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Return}`,
			want: []reachCase{
				{"container → its host's agent", c1, "tcp", agentPort, true},
			},
		},
		{
			name: "Return to a host endpoint without policy: failsafe ports only",
			manifest: `
apiVersion: tabby.dev/v1
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Return}
---
apiVersion: tabby.dev/v1
kind: HostEndpoint
metadata: {name: h1-all, labels: {host: h1}}
spec: {node: h1, interfaceName: "*"}`,
			want: []reachCase{
				{"container → its host's agent", c1, "tcp", agentPort, false},
				{"container → its host's BGP (failsafe)", c1, "tcp", bgpPort, true},
				{"container → its host's etcd port (failsafe)", c1, "tcp", etcdPort, true},
				{"container on another host → the agent", c2, "tcp", agentPort, false},
			},
		},
		{
			name: "Return to a host endpoint whose policy allows the agent",
			manifest: `
apiVersion: tabby.dev/v1
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Return}
---
apiVersion: tabby.dev/v1
kind: HostEndpoint
metadata: {name: h1-all, labels: {host: h1}}
spec: {node: h1, interfaceName: "*"}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: h1-agent}
spec:
  selector: host == 'h1'
  ingress: [{action: Allow, protocol: TCP, source: {nets: ["{{pool}}"]}, destination: {ports: [{{agentPort}}]}}]`,
			want: []reachCase{
				{"container → its host's agent", c1, "tcp", agentPort, true},
				{"container on another host → the agent", c2, "tcp", agentPort, true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := w.with(t)
			refs := w.apply(strings.ReplaceAll(tc.manifest, "{{agentPort}}", fmt.Sprint(lab.AgentHTTPPort)))
			time.Sleep(settle)
			expectReach(t, tc.want)
			w.remove(refs)
			time.Sleep(settle)
			expectReach(t, []reachCase{
				{"container → its host's agent (default again)", c1, "tcp", agentPort, false},
				{"container on another host → the agent (default again)", c2, "tcp", agentPort, true},
			})
		})
	}
}
