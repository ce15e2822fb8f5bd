package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

// blocked is how long a connection attempt the test expects to be dropped
// is given (a dropped SYN is retried after 1 s: two tries).
const blocked = 2500 * time.Millisecond

// dialFrom connects from namespace ns to addr within d.
func dialFrom(ns string, addr netip.AddrPort, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := lab.DialIn(ctx, ns, "tcp4", addr.String())
	if err != nil {
		return err
	}
	return c.Close()
}

// TestPrivilegedSecurityTLSLab: `tabby lab up --tls` (the CLI a user
// runs) makes a lab whose datastore speaks only TLS and wants client
// certificates. The CLI (--lab), the agents and the DNS server work with
// theirs; a container — or anyone — without a certificate is refused,
// over the fabric and over the root namespace's socket; no private key
// appears in any log or in `tabby get` output.
func TestPrivilegedSecurityTLSLab(t *testing.T) {
	requireRoot(t)
	bin := filepath.Join(binaries(t), lab.TabbyBinary)
	name := labName("st")
	tabby := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return string(out), err
	}
	t0 := time.Now()
	out, err := tabby("lab", "up", name, "--nodes", "2", "--tls")
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(lab.DefaultStateRoot, name)); err == nil {
			if out, err := tabby("lab", "down", name); err != nil {
				t.Errorf("tabby lab down %s: %v\n%s", name, err, out)
			}
		}
	})
	if err != nil {
		t.Fatalf("tabby lab up --tls: %v\n%s", err, out)
	}
	figure(t, "tabby lab up --tls, 2 hosts", "%s", time.Since(t0).Round(10*time.Millisecond))
	l, err := lab.Open("", name)
	if err != nil {
		t.Fatal(err)
	}
	files, ok := l.ClientTLS()
	if !ok {
		t.Fatal("the lab does not use TLS")
	}
	master := l.State().Master.IP.Addr()
	if out, err := tabby("--lab", name, "get", "nodes"); err != nil || !strings.Contains(out, "h2") {
		t.Fatalf("tabby --lab %s get nodes: %v\n%s", name, err, out)
	}
	if out, err := tabby("lab", "run", name, "--node", "h1", "--name", "a", "--", "sleep", "infinity"); err != nil {
		t.Fatalf("tabby lab run (the agent uses its certificate): %v\n%s", err, out)
	}

	// Attacks on the datastore.
	https := "https://" + netip.AddrPortFrom(master, lab.EtcdPort).String()
	for _, tc := range []struct {
		name string
		argv []string
		// timeout bounds the CLI's wait: the TLS refusal arrives once the
		// handshake is done, which on a loaded CI machine can take more
		// than the 2 s that are plenty to tell plain HTTP is not answered.
		timeout string
		wants   string
	}{
		{"container, TLS without a client certificate", []string{"--datastore", https, "--etcd-ca", files.CA}, "15s", "certificate required"},
		{"container, plain HTTP", []string{"--datastore", "http://" + netip.AddrPortFrom(master, lab.EtcdPort).String()}, "2s", "no etcd answered"},
	} {
		argv := append([]string{bin, "--timeout", tc.timeout}, tc.argv...)
		out, err := tabby(append([]string{"lab", "exec", name, "a", "--"}, append(argv, "get", "nodes")...)...)
		if err == nil || !strings.Contains(out, tc.wants) {
			t.Errorf("%s: got %v\n%s\nwant it refused (%q)", tc.name, err, out, tc.wants)
		}
	}
	sock := strings.TrimPrefix(l.ClientURL(), "unixs://")
	for _, tc := range []struct {
		name string
		cfg  etcd.Config
	}{
		{"root namespace, no client certificate", etcd.Config{Endpoints: []string{l.ClientURL()}, CAFile: files.CA}},
		{"root namespace, plain unix socket", etcd.Config{Endpoints: []string{"unix://" + sock}}},
	} {
		tc.cfg.DialTimeout = 2 * time.Second
		if s, err := etcd.New(tc.cfg); err == nil {
			s.Close()
			t.Errorf("%s: got a connection, want it refused", tc.name)
		}
	}

	// No private key in logs or output.
	secrets := keyMaterial(t, filepath.Join(l.Dir(), "tls"))
	out, _ = tabby("--lab", name, "get", "nodes", "-o", "yaml")
	if containsAny([]byte(out), secrets) {
		t.Error("tabby get nodes -o yaml shows private key material")
	}
	e := &env{t: t, lab: l}
	if hits := e.logsContain(secrets...); len(hits) > 0 {
		t.Errorf("private key material in logs: %v", hits)
	}
	figure(t, "refused without a client certificate", "container → https://master:2379, container → http://master:2379, root → unixs:// and unix:// socket")
}

// keyMaterial returns the lines of every private key under dir, and the
// PEM header, for searching logs.
func keyMaterial(t *testing.T, dir string) [][]byte {
	t.Helper()
	keys, err := filepath.Glob(filepath.Join(dir, "*-key.pem"))
	if err != nil || len(keys) == 0 {
		t.Fatalf("no keys in %s (%v)", dir, err)
	}
	out := [][]byte{[]byte("PRIVATE KEY")}
	for _, k := range keys {
		data, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if line := sc.Bytes(); len(line) >= 40 && !bytes.HasPrefix(line, []byte("-----")) {
				out = append(out, append([]byte(nil), line...))
			}
		}
	}
	return out
}

func containsAny(data []byte, needles [][]byte) bool {
	for _, n := range needles {
		if bytes.Contains(data, n) {
			return true
		}
	}
	return false
}

// udpSink receives datagrams in a container and remembers "SRC PAYLOAD".
type udpSink struct {
	port int
	mu   sync.Mutex
	got  []string
}

func (e *env) udpSink(c *lab.Container) *udpSink {
	e.t.Helper()
	var pc net.PacketConn
	err := netns.Do(netns.Path(c.NetNS), func() error {
		var err error
		pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(c.IP(), 0).String())
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { pc.Close() })
	s := &udpSink{port: pc.LocalAddr().(*net.UDPAddr).Port}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, from.(*net.UDPAddr).IP.String()+" "+string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSink) has(entry string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.got, entry)
}

// sendUDP sends msg from container c with source address src (which the
// container has configured, as a forger would) to dst.
func sendUDP(c *lab.Container, src netip.Addr, dst netip.AddrPort, msg string) error {
	return netns.Do(netns.Path(c.NetNS), func() error {
		conn, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte(msg))
		return err
	})
}

// TestPrivilegedSecuritySpoofing: a container that configures another
// container's address (on its host or another), or an unused pool
// address, and sends from it gets nothing through, while its own address
// works. Taking over a neighbour's MAC address as well gains it nothing:
// traffic for the neighbour still reaches the neighbour, and its forged
// packets are still dropped (hosts route /32s to each container's own
// veth, so no layer-2 trick redirects traffic).
func TestPrivilegedSecuritySpoofing(t *testing.T) {
	e := up(t, lab.Config{Name: "sp", Nodes: 2})
	a, b := e.run("a", "h1"), e.run("b", "h1")
	c, d := e.run("c", "h2"), e.run("d", "h2")
	for _, x := range []*lab.Container{a, b, d} {
		e.reach(x, c)
	}
	sink := e.udpSink(c)
	dst := netip.AddrPortFrom(c.IP(), uint16(sink.port))
	unused := netip.MustParseAddr("10.244.255.250")
	for _, addr := range []netip.Addr{b.IP(), d.IP(), unused} {
		if out, err := e.in(a, "ip", "addr", "add", addr.String()+"/32", "dev", "eth0"); err != nil {
			t.Fatalf("configure %s in a: %v\n%s", addr, err, out)
		}
	}
	marker := 0
	// arrived sends msg from src three times, then a marker from a's own
	// address until that arrives, and says whether msg arrived before it.
	arrived := func(src netip.Addr, msg string) bool {
		t.Helper()
		for range 3 {
			if err := sendUDP(a, src, dst, msg); err != nil {
				t.Fatalf("send from %s: %v", src, err)
			}
		}
		marker++
		m := fmt.Sprintf("marker-%d", marker)
		waitUntil(t, "a's own marker arrives", 30*time.Second, func() error {
			if err := sendUDP(a, a.IP(), dst, m); err != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
			if !sink.has(a.IP().String() + " " + m) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		return sink.has(src.String() + " " + msg)
	}
	if !arrived(a.IP(), "own") {
		t.Error("a packet from a's own address did not arrive")
	}
	var stopped []string
	for _, tc := range []struct {
		name string
		src  netip.Addr
	}{
		{"address of a neighbour on the same host", b.IP()},
		{"address of a container on another host", d.IP()},
		{"unused pool address", unused},
	} {
		if arrived(tc.src, "forged") {
			t.Errorf("a packet from a with the %s (%s) arrived", tc.name, tc.src)
		} else {
			stopped = append(stopped, tc.name)
		}
	}

	// MAC: a takes b's MAC address too, and listens on b's address.
	out, err := e.in(b, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	bMAC := strings.TrimSpace(out)
	for _, argv := range [][]string{
		{"ip", "link", "set", "eth0", "address", bMAC},
	} {
		if out, err := e.in(a, argv...); err != nil {
			t.Fatalf("%v in a: %v\n%s", argv, err, out)
		}
	}
	port := 8080
	for _, x := range []*lab.Container{a, b} {
		ln, err := lab.ListenIn(x.NetNS, "tcp4", netip.AddrPortFrom(b.IP(), uint16(port)).String())
		if err != nil {
			t.Fatalf("listen in %s on %s: %v", x.Name, b.IP(), err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = conn.Write([]byte(x.Name))
				conn.Close()
			}
		}()
	}
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := lab.DialIn(ctx, c.NetNS, "tcp4", netip.AddrPortFrom(b.IP(), uint16(port)).String())
		cancel()
		if err != nil {
			t.Fatalf("c → b:%d (try %d): %v", port, i, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(conn)
		conn.Close()
		if string(got) != "b" {
			t.Fatalf("c → b's address answered by %q, want b", got)
		}
	}
	if arrived(b.IP(), "forged-with-mac") {
		t.Error("a packet from a with b's address and b's MAC arrived")
	}
	figure(t, "forged source addresses dropped", "%s; with a neighbour's MAC too: still dropped, and traffic for the neighbour still reaches it", strings.Join(stopped, ", "))
}

// TestPrivilegedSecurityHostPorts: a container cannot open a connection
// to its own host — the agent's HTTP port, BGP, or a service on the etcd
// port — while another host can; once the host's FelixConfiguration
// allows workload-to-host traffic (defaultEndpointToHostAction Accept), it
// can; removing that blocks it again.
func TestPrivilegedSecurityHostPorts(t *testing.T) {
	e := up(t, lab.Config{Name: "hp", Nodes: 2})
	a := e.run("a", "h1")
	h1 := e.host("h1")
	e.peersUp("h1", 2)
	// A service on the etcd port of the host (etcd itself runs on the
	// master in the lab; a host could run a member).
	etcdLike, err := lab.ListenIn(h1.Namespace, "tcp4", netip.AddrPortFrom(h1.IP.Addr(), lab.EtcdPort).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcdLike.Close() })
	go func() {
		for {
			c, err := etcdLike.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ports := []struct {
		name string
		port uint16
	}{{"agent HTTP", lab.AgentHTTPPort}, {"BGP", 179}, {"etcd port", lab.EtcdPort}}
	reached := func() []string {
		var (
			mu  sync.Mutex
			wg  sync.WaitGroup
			got []string
		)
		for _, p := range ports {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if dialFrom(a.NetNS, netip.AddrPortFrom(h1.IP.Addr(), p.port), blocked) == nil {
					mu.Lock()
					got = append(got, p.name)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return got
	}
	for _, p := range ports {
		addr := netip.AddrPortFrom(h1.IP.Addr(), p.port)
		waitUntil(t, "h2 reaches h1's "+p.name, labWait, func() error { return dialFrom(e.host("h2").Namespace, addr, 2*time.Second) })
	}
	if got := reached(); len(got) > 0 {
		t.Errorf("container a reaches its host's %v", got)
	}
	allow := &api.FelixConfiguration{ObjectMeta: api.ObjectMeta{Name: "node.h1"},
		Spec: api.FelixConfigurationSpec{DefaultEndpointToHostAction: "Accept"}}
	e.apply(allow)
	for _, p := range ports {
		addr := netip.AddrPortFrom(h1.IP.Addr(), p.port)
		waitUntil(t, "with Accept, a reaches its host's "+p.name, labWait, func() error { return dialFrom(a.NetNS, addr, 2*time.Second) })
	}
	if _, err := e.client.Delete(context.Background(), "FelixConfiguration", "", "node.h1", ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "blocked again: a → its host", labWait, func() error {
		if got := reached(); len(got) > 0 {
			return fmt.Errorf("a still reaches its host's %v", got)
		}
		return nil
	})
	figure(t, "container → its own host", "agent HTTP :9099, BGP :179, :2379 dropped by default; reachable only with defaultEndpointToHostAction Accept")
}

// TestPrivilegedSecurityBGPPassword: with a node-mesh password, BGP
// sessions come back up with TCP-MD5 signatures; a connection from a peer
// address without the password is dropped by the kernel (before, it was
// accepted); the password shows in no log, no `tabby get` output and no
// `tabby node status`.
func TestPrivilegedSecurityBGPPassword(t *testing.T) {
	e := up(t, lab.Config{Name: "md", Nodes: 3})
	c1, c3 := e.run("c1", "h1"), e.run("c3", "h3")
	e.reach(c1, c3)
	for _, n := range []string{"h1", "h2", "h3"} {
		e.peersUp(n, 3)
	}
	h1bgp := netip.AddrPortFrom(e.host("h1").IP.Addr(), 179)
	h3 := e.host("h3").Namespace
	// h3 impersonated: its agent is down, something else speaks from its
	// address. Without a password the TCP handshake succeeds.
	if err := e.lab.StopAgent("h3", false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a connection from h3's address to h1:179 without a password", labWait, func() error {
		return dialFrom(h3, h1bgp, 2*time.Second)
	})
	var b [12]byte
	_, _ = rand.Read(b[:])
	secret := "md5-" + hex.EncodeToString(b[:])
	e.apply(&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"},
		Spec: api.BGPConfigurationSpec{NodeMeshPassword: &api.BGPPassword{Value: secret}}})
	for _, n := range []string{"h1", "h2", "master"} {
		n := n
		waitUntil(t, n+" re-establishes its sessions with the password", labWait, func() error {
			st, err := e.status(n)
			if err != nil {
				return err
			}
			up := 0
			for _, p := range st.Peers {
				if p.State == "up" {
					up++
				}
			}
			if up != 2 {
				return fmt.Errorf("%d sessions up, want 2 (h3 is down)", up)
			}
			return nil
		})
	}
	took := waitUntil(t, "h1 drops connections from h3's address without the password", labWait, func() error {
		if dialFrom(h3, h1bgp, blocked) == nil {
			return fmt.Errorf("connected")
		}
		return nil
	})
	figure(t, "unsigned TCP connection to BGP from a peer's address", "dropped once the password is set (%s)", took.Round(10*time.Millisecond))
	if err := e.lab.StartAgent(context.Background(), "h3"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"h1", "h2", "h3"} {
		e.peersUp(n, 3)
	}
	e.reach(c1, c3)
	e.reach(c3, c1)

	// The password is nowhere to be read.
	needle := [][]byte{[]byte(secret)}
	for _, args := range [][]string{
		{"get", "bgpconfigurations", "-o", "yaml"},
		{"get", "bgpconfigurations", "-o", "json"},
		{"get", "bgpconfigurations", "default", "-o", "yaml"},
		{"get", "bgpconfigurations", "-o", "wide"},
	} {
		out, err := e.cli(args...)
		if err != nil {
			t.Errorf("tabby %v: %v\n%s", args, err, out)
		}
		if containsAny([]byte(out), needle) {
			t.Errorf("tabby %v shows the BGP password:\n%s", args, out)
		}
	}
	for _, n := range []string{"h1", "h3"} {
		st, err := e.status(n)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(st)
		if containsAny(js, needle) {
			t.Errorf("tabby node status on %s shows the BGP password", n)
		}
	}
	if hits := e.logsContain(needle...); len(hits) > 0 {
		t.Errorf("the BGP password is in logs: %v", hits)
	}
	figure(t, "BGP password in logs, tabby get, tabby node status", "none")
}
