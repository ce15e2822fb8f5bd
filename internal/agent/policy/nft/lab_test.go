package nft

// A small test lab for real traffic: a "host" namespace with an uplink to
// an "ext" namespace (another machine on the LAN), and containers wired to
// the host the way the agent wires them (internal/agent/endpoint: routed
// veths, /32 routes, proxy ARP, 169.254.1.1 gateway).
//
//	ext (192.0.2.1/24) ── ext0 ══ up0 ── host (192.0.2.10/24, forwarding)
//	                                      ├─ tby… ══ eth0  container a
//	                                      └─ tby… ══ eth0  container b …

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/netns"
)

const (
	hostIP = "192.0.2.10"
	extIP  = "192.0.2.1"
	// okDeadline bounds exchanges that must succeed (a safety net, not a
	// timing assertion); dropDeadline is how long an exchange that must
	// fail is given: a dropped packet never gets an answer.
	okDeadline   = 10 * time.Second
	dropDeadline = 700 * time.Millisecond
)

type lab struct {
	t         testing.TB
	host, ext *testNS
	wirer     *endpoint.Wirer
	d         *Driver
}

type container struct {
	name, ns, ifName string
	addr             netip.Addr
}

func writeSysctl(key, value string) error {
	return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func addAddr(name, cidr string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	a.Flags = unix.IFA_F_NODAD
	return netlink.AddrAdd(l, a)
}

func newLab(t testing.TB) *lab {
	t.Helper()
	requireRoot(t)
	l := &lab{t: t, host: newNS(t, "tbyh-"), ext: newNS(t, "tbyx-"), wirer: endpoint.New(nil)}
	in(t, l.host.path, func() error {
		for _, k := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter"} {
			v := "0"
			if k == "net/ipv4/ip_forward" {
				v = "1"
			}
			if err := writeSysctl(k, v); err != nil {
				return err
			}
		}
		if err := linkUp("lo"); err != nil {
			return err
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "up0"
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "ext0", PeerNamespace: netlink.NsFd(int(l.ext.fd.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("create uplink: %w", err)
		}
		if err := addAddr("up0", hostIP+"/24"); err != nil {
			return err
		}
		if err := linkUp("up0"); err != nil {
			return err
		}
		up, _ := netlink.LinkByName("up0")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(extIP)})
	})
	in(t, l.ext.path, func() error {
		if err := linkUp("lo"); err != nil {
			return err
		}
		if err := addAddr("ext0", extIP+"/24"); err != nil {
			return err
		}
		if err := linkUp("ext0"); err != nil {
			return err
		}
		ext0, _ := netlink.LinkByName("ext0")
		_, pool, _ := net.ParseCIDR("10.65.0.0/16")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: ext0.Attrs().Index, Dst: pool, Gw: net.ParseIP(hostIP)})
	})
	l.d = l.host.driver()
	return l
}

func in(t testing.TB, path string, fn func() error) {
	t.Helper()
	if err := netns.Do(path, fn); err != nil {
		t.Fatal(err)
	}
}

// addContainer creates a container namespace and wires it to the host.
func (l *lab) addContainer(name, addr string) *container {
	l.t.Helper()
	ns := newNS(l.t, "tbyc-")
	c := &container{name: name, ns: ns.path, addr: netip.MustParseAddr(addr)}
	cfg := endpoint.Config{ContainerID: name + "-" + ns.name, IfName: "eth0", NetNS: ns.path, Addrs: []netip.Prefix{netip.PrefixFrom(c.addr, 32)}}
	in(l.t, l.host.path, func() error {
		res, err := l.wirer.Add(context.Background(), cfg)
		c.ifName = res.HostIfName
		return err
	})
	in(l.t, ns.path, func() error { return linkUp("lo") })
	return c
}

// serveTCP listens in a namespace and answers each line with the
// client's address. It returns the port.
func serveTCP(t testing.TB, nsPath, ip string) uint16 {
	t.Helper()
	var ln net.Listener
	in(t, nsPath, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					c.SetDeadline(time.Now().Add(okDeadline))
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
					fmt.Fprintf(c, "%s\n", host)
				}
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// serveUDP answers each datagram with the sender's address.
func serveUDP(t testing.TB, nsPath, ip string) uint16 {
	t.Helper()
	var pc net.PacketConn
	in(t, nsPath, func() (err error) {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.(*net.UDPAddr).IP.String()), from)
		}
	}()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// tcpAsk connects from a namespace, sends a line and returns the answer
// (the address the server saw).
func tcpAsk(nsPath, dst string, port uint16, deadline time.Duration) (string, error) {
	var answer string
	err := netns.Do(nsPath, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(dst, fmt.Sprint(port)), deadline)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(deadline))
		if _, err := fmt.Fprintln(c, "hello"); err != nil {
			return err
		}
		answer, err = bufio.NewReader(c).ReadString('\n')
		answer = strings.TrimSpace(answer)
		return err
	})
	return answer, err
}

// udpAsk sends one datagram from src (any local address if empty) and
// waits for the answer.
func udpAsk(nsPath, src, dst string, port uint16, deadline time.Duration) (string, error) {
	var answer string
	err := netns.Do(nsPath, func() error {
		var laddr *net.UDPAddr
		if src != "" {
			laddr = &net.UDPAddr{IP: net.ParseIP(src)}
		}
		c, err := net.DialUDP("udp", laddr, &net.UDPAddr{IP: net.ParseIP(dst), Port: int(port)})
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(deadline))
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		answer = string(buf[:n])
		return err
	})
	return answer, err
}

// eventually retries f until it succeeds or the deadline passes.
func eventually(f func() (string, error)) (string, error) {
	end := time.Now().Add(okDeadline)
	for {
		s, err := f()
		if err == nil || time.Now().After(end) {
			return s, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustReach requires an exchange to succeed and returns the answer.
func mustReach(t testing.TB, what string, f func(deadline time.Duration) (string, error)) string {
	t.Helper()
	s, err := eventually(func() (string, error) { return f(2 * time.Second) })
	if err != nil {
		t.Fatalf("%s: %v, want an answer", what, err)
	}
	return s
}

// mustNotReach requires an exchange to fail (at once: no retries).
func mustNotReach(t testing.TB, what string, f func(deadline time.Duration) (string, error)) {
	t.Helper()
	if s, err := f(dropDeadline); err == nil {
		t.Fatalf("%s: got answer %q, want no answer", what, s)
	}
}

// persistentConn is a TCP connection kept open across policy changes.
type persistentConn struct {
	c net.Conn
	r *bufio.Reader
}

// dialPersistent connects from the calling thread's namespace (call it in
// netns.Do); the socket stays in that namespace afterwards.
func dialPersistent(dst string, port uint16) (*persistentConn, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(dst, fmt.Sprint(port)), okDeadline)
	if err != nil {
		return nil, err
	}
	return &persistentConn{c: c, r: bufio.NewReader(c)}, nil
}

func (p *persistentConn) ping() error { return p.pingWithin(okDeadline) }

func (p *persistentConn) pingWithin(d time.Duration) error {
	p.c.SetDeadline(time.Now().Add(d))
	if _, err := fmt.Fprintln(p.c, "ping"); err != nil {
		return err
	}
	_, err := p.r.ReadString('\n')
	return err
}

func (p *persistentConn) Close() error { return p.c.Close() }

func nsHandle(ns *testNS) vnetns.NsHandle { return vnetns.NsHandle(int(ns.fd.Fd())) }

// sinkUDP records "<source> <payload>" of every datagram it receives.
func sinkUDP(t testing.TB, nsPath, ip string) (uint16, func() []string) {
	t.Helper()
	var pc net.PacketConn
	in(t, nsPath, func() (err error) {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		return err
	})
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, from.(*net.UDPAddr).IP.String()+" "+string(buf[:n]))
			mu.Unlock()
		}
	}()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// sendUDP sends one datagram from src (call it in netns.Do).
func sendUDP(src, dst string, port uint16, msg string) error {
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.ParseIP(dst), Port: int(port)})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(msg))
	return err
}
