package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/testenv"
)

// dialOK dials addr (tcp) from namespace ns, polling until it connects
// or the deadline passes.
func dialOK(t *testing.T, ns string, addr netip.AddrPort) {
	t.Helper()
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, derr := DialIn(ctx, ns, "tcp", addr.String())
		cancel()
		if err = derr; err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dial %s from %s: %v", addr, ns, err)
}

// A dual-stack lab: IPv6 fabric on unique local addresses across the
// router, both pools, the datastore over both families.
func TestPrivilegedDualStackFabric(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("df"), Nodes: 2, Racks: 2, IPFamily: Dual})
	st := l.State()
	h2, _ := st.Host("h2")
	if h2.Rack != 2 || !h2.IP6.IsValid() {
		t.Fatalf("h2: got rack %d, IPv6 %v; want rack 2 with an IPv6 address", h2.Rack, h2.IP6)
	}
	// h2 is in rack 2: it reaches the master's datastore over IPv6
	// through the router, and over IPv4.
	dialOK(t, h2.Namespace, netip.AddrPortFrom(st.Master.IP6.Addr(), EtcdPort))
	dialOK(t, h2.Namespace, netip.AddrPortFrom(st.Master.IP.Addr(), EtcdPort))

	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := datastore.NewClient(s)
	for name, cidr := range map[string]netip.Prefix{PoolName: DefaultPool, Pool6Name: DefaultPool6} {
		r, err := c.Get(context.Background(), "IPPool", "", name)
		if err != nil {
			t.Fatalf("pool %s: %v", name, err)
		}
		if got := r.(*api.IPPool).Spec.CIDR; got != cidr.String() {
			t.Errorf("pool %s: got CIDR %s, want %s", name, got, cidr)
		}
	}
	// Each agent registered its IPv6 address for BGP.
	r, err := c.Get(context.Background(), "Node", "", "h2")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.(*api.Node).Spec.BGP.IPv6Address; got != h2.IP6.String() {
		t.Errorf("node h2: got bgp.ipv6Address %q, want %s", got, h2.IP6)
	}
}

// cmdOut runs argv in container c and returns its output.
func cmdOut(t *testing.T, l *Lab, c string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd, err := l.ContainerCommand(ctx, c, argv)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually polls f until it returns nil, failing with its last error
// after 20 s.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// ping6 is the real ping over IPv6, one echo.
func ping6(t *testing.T, l *Lab, from string, to netip.Addr) error {
	out, err := cmdOut(t, l, from, "ping", "-6", "-n", "-c1", "-W2", to.String())
	if err != nil {
		return fmt.Errorf("ping -6 %s from %s: %v: %s", to, from, err, out)
	}
	return nil
}

// TestPrivilegedDualStackContainers: in a dual-stack lab every container
// gets one address of each family from the pools (one ADD, through the
// real plugin, containerd's way and Mesos' way), is wired Calico's way for
// IPv6, and reaches containers on other hosts by ping -6 and TCP over
// IPv6, routed by BGP (IPv6 sessions); DNS answers AAAA for both name
// styles over real UDP, asked over IPv6 from a container; a policy denies
// over IPv6 exactly what it denies over IPv4; a forged IPv6 source is
// dropped. (Across racks: routinglab.TestPrivilegedLabBIRDRacksDualStack.)
func TestPrivilegedDualStackContainers(t *testing.T) {
	requireRoot(t)
	testenv.NeedTool(t, "ping")
	testenv.NeedTool(t, "dig")
	l := upLab(t, Config{Name: uniqueName("dc"), Nodes: 3, IPFamily: Dual, DNS: testDNS})
	ctx := context.Background()
	run := func(spec RunSpec) *Container { t.Helper(); return mustRun(t, l, spec) }
	web := run(RunSpec{Name: "web", Node: "h1", MesosApp: "/shop/web"})           // rack 1
	db := run(RunSpec{Name: "db", Node: "h2", Labels: []KeyValue{{"app", "db"}}}) // rack 2
	cli := run(RunSpec{Name: "cli", Node: "h3"})                                  // rack 1

	seen := map[netip.Addr]string{}
	for _, c := range []*Container{web, db, cli} {
		if len(c.IPs) != 2 || !DefaultPool.Contains(c.IP()) || !DefaultPool6.Contains(c.IP6()) {
			t.Fatalf("%s: got addresses %v, want one from %s and one from %s", c.Name, c.IPs, DefaultPool, DefaultPool6)
		}
		for _, a := range []netip.Addr{c.IP(), c.IP6()} {
			if o, dup := seen[a]; dup {
				t.Errorf("%s and %s share %s", c.Name, o, a)
			}
			seen[a] = c.Name
		}
	}

	// Wiring: the /128, not tentative (no DAD wait), and the default route
	// via the host side's fixed link-local address.
	out, err := cmdOut(t, l, "db", "ip", "-6", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(out, db.IP6().String()+"/128") || strings.Contains(out, "tentative") {
		t.Errorf("db eth0 IPv6 addresses: got %q (%v), want %s/128 and nothing tentative", out, err, db.IP6())
	}
	out, err = cmdOut(t, l, "db", "ip", "-6", "route", "show", "default")
	if err != nil || !strings.Contains(out, "via fe80::ecee:eeff:feee:eeee dev eth0") {
		t.Errorf("db IPv6 default route: got %q (%v), want via fe80::ecee:eeff:feee:eeee dev eth0", out, err)
	}

	// ping -6 and TCP over IPv6 between every pair of hosts, both ways;
	// IPv4 still works.
	for _, p := range [][2]*Container{{web, cli}, {cli, web}, {web, db}, {db, web}, {cli, db}, {db, cli}} {
		from, to := p[0], p[1]
		eventually(t, "ping -6 "+from.Name+" → "+to.Name, func() error { return ping6(t, l, from.Name, to.IP6()) })
		if err := TCPEchoIn(from.NetNS, to.NetNS, to.IP6()); err != nil {
			t.Errorf("TCP over IPv6 %s → %s (%s): %v", from.Name, to.Name, to.IP6(), err)
		}
		if err := TCPEchoIn(from.NetNS, to.NetNS, to.IP()); err != nil {
			t.Errorf("TCP over IPv4 %s → %s (%s): %v", from.Name, to.Name, to.IP(), err)
		}
	}

	// The Mesos result (CNI 0.2.0 shape) carries both: ip4 and ip6.
	info, err := os.ReadFile(filepath.Join(filepath.Dir(l.mesosCheckpoint(web)), "eth0", "network.info"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(info), `"ip4"`) || !strings.Contains(string(info), `"ip6"`) || !strings.Contains(string(info), web.IP6().String()) {
		t.Errorf("Mesos result of web: got %s, want ip4 and ip6 (%s)", info, web.IP6())
	}

	// The endpoints hold both addresses.
	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	weps, _, err := datastore.NewClient(s).List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range weps {
		if w := r.(*api.WorkloadEndpoint); len(w.Spec.IPNetworks) != 2 {
			t.Errorf("endpoint %s: got ipNetworks %v, want an IPv4 and an IPv6 address", w.Name, w.Spec.IPNetworks)
		}
	}

	// dig AAAA from a container, to the master's DNS over IPv6: both name
	// styles give web's IPv6 address; A still gives its IPv4 one.
	master6 := l.State().Master.IP6.Addr().String()
	for _, q := range []struct{ name, typ, want string }{
		{"web-shop.marathon.mesos", "AAAA", web.IP6().String()},
		{"web-shop.marathon.containerip.dcos.thisdcos.directory", "AAAA", web.IP6().String()},
		{"web-shop.marathon.mesos", "A", web.IP().String()},
	} {
		eventually(t, "dig "+q.typ+" "+q.name, func() error {
			out, err := cmdOut(t, l, "cli", "dig", "+short", "+time=2", "+tries=1", "@"+master6, q.typ, q.name)
			if err != nil || strings.TrimSpace(out) != q.want {
				return fmt.Errorf("got %q (%v), want %s", out, err, q.want)
			}
			return nil
		})
	}

	// The Mesos-DNS HTTP API, over IPv6, lists both addresses.
	resp, err := HTTPClientIn(l.State().Master.Namespace).Get("http://[" + master6 + "]:8123/v1/hosts/web-shop.marathon.mesos")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, a := range []netip.Addr{web.IP(), web.IP6()} {
		if !strings.Contains(string(body), `"ip":"`+a.String()+`"`) {
			t.Errorf("GET /v1/hosts/web-shop.marathon.mesos: got %s, want %s listed", body, a)
		}
	}
}

// TestPrivilegedIPv6OnlyLab: --ip-family ipv6 gives containers IPv6
// addresses only (no IPv4 pool); they reach each other across hosts by
// ping -6 and TCP, and their names have AAAA records and no A record.
func TestPrivilegedIPv6OnlyLab(t *testing.T) {
	requireRoot(t)
	testenv.NeedTool(t, "ping")
	testenv.NeedTool(t, "dig")
	l := upLab(t, Config{Name: uniqueName("d6"), Nodes: 2, IPFamily: IPv6, DNS: testDNS})
	ctx := context.Background()
	var cs []*Container
	for i, app := range []string{"/v6/a", "/v6/b"} {
		c, err := l.Run(ctx, RunSpec{Name: fmt.Sprintf("c%d", i+1), Node: HostName(i + 1), MesosApp: app, Command: []string{"sleep", "infinity"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.IPs) != 1 || !DefaultPool6.Contains(c.IP6()) {
			t.Fatalf("%s: got addresses %v, want one from %s only", c.Name, c.IPs, DefaultPool6)
		}
		cs = append(cs, c)
	}
	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := datastore.NewClient(s).Get(ctx, "IPPool", "", PoolName); err == nil {
		t.Errorf("an ipv6 lab has the IPv4 pool %s; want none", PoolName)
	}
	a, b := cs[0], cs[1]
	eventually(t, "ping -6 c1 → c2", func() error { return ping6(t, l, a.Name, b.IP6()) })
	eventually(t, "ping -6 c2 → c1", func() error { return ping6(t, l, b.Name, a.IP6()) })
	if err := TCPEchoIn(a.NetNS, b.NetNS, b.IP6()); err != nil {
		t.Errorf("TCP over IPv6 c1 → c2: %v", err)
	}
	master6 := l.State().Master.IP6.Addr().String()
	eventually(t, "dig AAAA b-v6.marathon.mesos", func() error {
		out, err := cmdOut(t, l, "c1", "dig", "+short", "+time=2", "+tries=1", "@"+master6, "AAAA", "b-v6.marathon.mesos")
		if err != nil || strings.TrimSpace(out) != b.IP6().String() {
			return fmt.Errorf("got %q (%v), want %s", out, err, b.IP6())
		}
		return nil
	})
	if out, err := cmdOut(t, l, "c1", "dig", "+short", "+time=2", "+tries=1", "@"+master6, "A", "b-v6.marathon.mesos"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("dig A b-v6.marathon.mesos: got %q (%v), want no address", out, err)
	}
}

// probeTCPFrom probes a TCP connection from container from to addr, with
// source src when valid.
func probeTCPFrom(from *Container, src netip.Addr, addr netip.AddrPort) ProbeOutcome {
	return ProbeOnce(context.Background(), ProbeTarget{NS: from.NetNS, Protocol: ProbeTCP, Src: src, Dst: addr, Timeout: time.Second})
}

// wantProbe polls until a probe's outcome is allowed (or denied), so a
// policy being programmed has time to land.
func wantProbe(t *testing.T, what string, allowed bool, probe func() ProbeOutcome) {
	t.Helper()
	eventually(t, what, func() error {
		o := probe()
		if o.Err != nil {
			return o.Err
		}
		if o.Allowed != allowed {
			return fmt.Errorf("got allowed=%v (%s), want %v", o.Allowed, o.Detail, allowed)
		}
		return nil
	})
}

// TestPrivilegedDualStackPolicy: one Calico policy, written without any
// family, denies over IPv6 exactly what it denies over IPv4 between hosts;
// and a container sending from an IPv6 address that is not its own is
// dropped (anti-spoofing), as one forging an IPv4 source is.
func TestPrivilegedDualStackPolicy(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("dp"), Nodes: 2, IPFamily: Dual})
	ctx := context.Background()
	run := func(spec RunSpec) *Container { t.Helper(); return mustRun(t, l, spec) }
	db := run(RunSpec{Name: "db", Node: "h1", Labels: []KeyValue{{"app", "db"}}})
	web := run(RunSpec{Name: "web", Node: "h2", Labels: []KeyValue{{"app", "web"}}})
	cli := run(RunSpec{Name: "cli", Node: "h2"})
	const port = 5432
	for _, a := range []netip.Addr{db.IP(), db.IP6()} {
		ln, err := ListenProbe(db.NetNS, ProbeTCP, netip.AddrPortFrom(a, port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	// Before the policy the network's profile lets both in, both families.
	for _, from := range []*Container{web, cli} {
		for _, a := range []netip.Addr{db.IP(), db.IP6()} {
			wantProbe(t, from.Name+" → db "+a.String()+" before the policy", true, func() ProbeOutcome {
				return probeTCPFrom(from, netip.Addr{}, netip.AddrPortFrom(a, port))
			})
		}
	}

	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tcp := api.Protocol("TCP")
	order := 10.0
	pol := &api.NetworkPolicy{
		ObjectMeta: api.ObjectMeta{Name: "db-from-web", Namespace: "default"},
		Spec: api.NetworkPolicySpec{Order: &order, Selector: "app == 'db'", Types: []string{"Ingress"}, Ingress: []api.Rule{{
			Action: api.ActionAllow, Protocol: &tcp, Source: api.EntityRule{Selector: "app == 'web'"},
			Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(port)}},
		}}},
	}
	if _, err := datastore.NewClient(s).Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{db.IP(), db.IP6()} {
		wantProbe(t, "cli → db "+a.String()+" under the policy", false, func() ProbeOutcome {
			return probeTCPFrom(cli, netip.Addr{}, netip.AddrPortFrom(a, port))
		})
		wantProbe(t, "web → db "+a.String()+" under the policy", true, func() ProbeOutcome {
			return probeTCPFrom(web, netip.Addr{}, netip.AddrPortFrom(a, port))
		})
	}

	// Anti-spoofing: web takes an extra address of each family that is not
	// its own and sends from it; the host drops both.
	forged := map[int]netip.Addr{4: netip.MustParseAddr("10.244.255.254"), 6: netip.MustParseAddr("fd00:244::dead:beef")}
	for fam, a := range forged {
		args := []string{"ip", "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "eth0"}
		if fam == 6 {
			args = append([]string{"ip", "-6"}, append(args[1:], "nodad")...)
		}
		if out, err := cmdOut(t, l, "web", args...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	for fam, src := range forged {
		dst := db.IP()
		if fam == 6 {
			dst = db.IP6()
		}
		if o := probeTCPFrom(web, src, netip.AddrPortFrom(dst, port)); o.Err != nil || o.Allowed {
			t.Errorf("web → db %s from forged source %s: got allowed=%v (%s, %v), want dropped", dst, src, o.Allowed, o.Detail, o.Err)
		}
		own := web.IP()
		if fam == 6 {
			own = web.IP6()
		}
		if o := probeTCPFrom(web, own, netip.AddrPortFrom(dst, port)); !o.Allowed {
			t.Errorf("web → db %s from its own address: got %s (%v), want allowed", dst, o.Detail, o.Err)
		}
	}
}

// TestPrivilegedIPv6NATOutgoing: the router between racks has no route to
// the pools, so a container cannot talk to it over IPv6 until its pool
// gets natOutgoing; then the router sees the host's own IPv6 address as
// the source (masquerade), as with IPv4.
func TestPrivilegedIPv6NATOutgoing(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("dn"), Nodes: 2, Racks: 2, IPFamily: Dual})
	st := l.State()
	c, err := l.Run(context.Background(), RunSpec{Name: "c", Node: "h1", Command: []string{"sleep", "infinity"}})
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := st.Host("h1")
	router := st.Router.Legs[0].IP6.Addr()
	ln, err := ListenIn(st.Router.Namespace, "tcp", netip.AddrPortFrom(router, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srcs := make(chan string, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			srcs <- conn.RemoteAddr().(*net.TCPAddr).IP.String()
			conn.Close()
		}
	}()
	dial := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := DialIn(ctx, c.NetNS, "tcp", ln.Addr().String())
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(); err == nil {
		t.Fatalf("container → router %s without natOutgoing: connected, want no way back (the router has no route to %s)", router, DefaultPool6)
	}

	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := datastore.NewClient(s)
	r, err := client.Get(context.Background(), "IPPool", "", Pool6Name)
	if err != nil {
		t.Fatal(err)
	}
	p := r.(*api.IPPool)
	p.Spec.NATOutgoing = true
	if _, err := client.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for len(srcs) > 0 {
		<-srcs
	}
	eventually(t, "container → router over IPv6 with natOutgoing", dial)
	if got := <-srcs; got != h1.IP6.Addr().String() {
		t.Errorf("source the router saw: got %s, want h1's address %s (masqueraded)", got, h1.IP6.Addr())
	}
}
