package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/internal/netns"
)

// Routed is the Calico-style routed veth path without Tabby (the
// machine baselines' topo_up):
//
//	c1 eth0 10.99.0.1/32 <-veth-> v1 [host, ip_forward] v2 <-veth-> eth0 10.99.0.2/32 c2
//
// Containers route everything via 169.254.1.1, answered by proxy-ARP on
// the host-side veth; the host has one /32 route per container and a
// stand-in uplink (a veth pair) so proxy-ARP has somewhere to route
// 169.254.1.1.
type Routed struct {
	Host, C1, C2 string // namespace names
	IP1, IP2     string
}

// NewRouted builds the routed path in three new namespaces.
func NewRouted(env *Env) (*Routed, error) {
	t := &Routed{Host: env.Name("rh"), C1: env.Name("rc"), C2: env.Name("rc"), IP1: "10.99.0.1", IP2: "10.99.0.2"}
	for _, ns := range []string{t.Host, t.C1, t.C2} {
		if _, err := env.J.Namespace(ns); err != nil {
			return nil, err
		}
	}
	if err := Sysctl(t.Host, "net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	steps := [][]string{
		{t.Host, "link", "add", "up0", "type", "veth", "peer", "name", "up1"},
		{t.Host, "addr", "add", "192.0.2.1/24", "dev", "up0"},
		{t.Host, "link", "set", "up0", "up"},
		{t.Host, "link", "set", "up1", "up"},
		{t.Host, "route", "add", "default", "via", "192.0.2.2", "dev", "up0"},
	}
	for i, c := range []string{t.C1, t.C2} {
		v, ip := fmt.Sprintf("v%d", i+1), []string{t.IP1, t.IP2}[i]
		steps = append(steps,
			[]string{"", "link", "add", v, "netns", t.Host, "type", "veth", "peer", "name", "eth0", "netns", c},
			[]string{t.Host, "link", "set", v, "up"},
			[]string{t.Host, "route", "add", ip + "/32", "dev", v, "scope", "link"},
			[]string{c, "addr", "add", ip + "/32", "dev", "eth0"},
			[]string{c, "link", "set", "eth0", "up"},
			[]string{c, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
			[]string{c, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
		)
	}
	for _, s := range steps {
		if err := IP(s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("routed path: %w", err)
		}
	}
	for _, v := range []string{"v1", "v2"} {
		if err := Sysctl(t.Host, "net.ipv4.conf."+v+".proxy_arp", "1"); err != nil {
			return nil, err
		}
		if err := Sysctl(t.Host, "net.ipv4.neigh."+v+".proxy_delay", "0"); err != nil {
			return nil, err
		}
	}
	if _, err := Run(context.Background(), InNS(t.C1, "ping", "-c1", "-W2", t.IP2)...); err != nil {
		return nil, fmt.Errorf("routed path broken: %w", err)
	}
	return t, nil
}

// CrossHost is the same routed path between two "hosts" joined by a
// bridge, as the lab's fabric joins its hosts (no encapsulation):
//
//	c1 10.99.1.1/32 — h1 [10.98.1.1/24] — bridge (fabric) — [10.98.1.2/24] h2 — c2 10.99.2.1/32
//
// Each host has a /32 route to its container and a route to the other
// container via the other host; containers use proxy-ARP as above.
type CrossHost struct {
	H1, H2, C1, C2, Fabric string
	IP1, IP2               string
	// IP6s are the containers' IPv6 addresses: the same path over IPv6,
	// wired as Tabby wires it (a /128, default route via the host side's
	// link-local fe80::1, a /128 route on the host).
	IP6s [2]string
}

// NewCrossHost builds the cross-host routed path in five new namespaces.
func NewCrossHost(env *Env) (*CrossHost, error) {
	t := &CrossHost{H1: env.Name("xh"), H2: env.Name("xh"), C1: env.Name("xc"), C2: env.Name("xc"), Fabric: env.Name("xf"),
		IP1: "10.99.1.1", IP2: "10.99.2.1", IP6s: [2]string{"fd00:99:1::1", "fd00:99:2::1"}}
	for _, ns := range []string{t.Fabric, t.H1, t.H2, t.C1, t.C2} {
		if _, err := env.J.Namespace(ns); err != nil {
			return nil, err
		}
	}
	steps := [][]string{
		{t.Fabric, "link", "add", "br0", "type", "bridge"},
		{t.Fabric, "link", "set", "br0", "up"},
	}
	hosts := []struct{ h, c, hostIP, peerIP, cIP, otherCIP, host6, peer6, c6, other6 string }{
		{t.H1, t.C1, "10.98.1.1", "10.98.1.2", t.IP1, t.IP2, "fd00:98:1::1", "fd00:98:1::2", t.IP6s[0], t.IP6s[1]},
		{t.H2, t.C2, "10.98.1.2", "10.98.1.1", t.IP2, t.IP1, "fd00:98:1::2", "fd00:98:1::1", t.IP6s[1], t.IP6s[0]},
	}
	for i, x := range hosts {
		port := fmt.Sprintf("p%d", i+1)
		steps = append(steps,
			[]string{"", "link", "add", "eth0", "netns", x.h, "type", "veth", "peer", "name", port, "netns", t.Fabric},
			[]string{t.Fabric, "link", "set", port, "master", "br0"},
			[]string{t.Fabric, "link", "set", port, "up"},
			[]string{x.h, "addr", "add", x.hostIP + "/24", "dev", "eth0"},
			[]string{x.h, "link", "set", "eth0", "up"},
			[]string{x.h, "route", "add", "default", "via", "10.98.1.254", "dev", "eth0", "onlink"},
			[]string{"", "link", "add", "v0", "netns", x.h, "type", "veth", "peer", "name", "eth0", "netns", x.c},
			[]string{x.h, "link", "set", "v0", "up"},
			[]string{x.h, "route", "add", x.cIP + "/32", "dev", "v0", "scope", "link"},
			[]string{x.h, "route", "add", x.otherCIP + "/32", "via", x.peerIP, "dev", "eth0"},
			[]string{x.c, "addr", "add", x.cIP + "/32", "dev", "eth0"},
			[]string{x.c, "link", "set", "eth0", "up"},
			[]string{x.c, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
			[]string{x.c, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
			[]string{x.h, "-6", "addr", "add", x.host6 + "/64", "dev", "eth0", "nodad"},
			[]string{x.h, "-6", "addr", "add", "fe80::1/64", "dev", "v0", "nodad"},
			[]string{x.h, "-6", "route", "add", x.c6 + "/128", "dev", "v0"},
			[]string{x.h, "-6", "route", "add", x.other6 + "/128", "via", x.peer6, "dev", "eth0"},
			[]string{x.c, "-6", "addr", "add", x.c6 + "/128", "dev", "eth0", "nodad"},
			[]string{x.c, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"},
		)
	}
	for _, x := range hosts {
		if err := Sysctl(x.h, "net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
		if err := Sysctl(x.h, "net.ipv6.conf.all.forwarding", "1"); err != nil {
			return nil, err
		}
	}
	for _, s := range steps {
		if err := IP(s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("cross-host path: %w", err)
		}
	}
	for _, x := range hosts {
		if err := Sysctl(x.h, "net.ipv4.conf.v0.proxy_arp", "1"); err != nil {
			return nil, err
		}
		if err := Sysctl(x.h, "net.ipv4.neigh.v0.proxy_delay", "0"); err != nil {
			return nil, err
		}
	}
	if _, err := Run(context.Background(), InNS(t.C1, "ping", "-c1", "-W2", t.IP2)...); err != nil {
		return nil, fmt.Errorf("cross-host path broken: %w", err)
	}
	// The first IPv6 packets wait for neighbour discovery: a few tries.
	var err6 error
	for range 5 {
		if _, err6 = Run(context.Background(), InNS(t.C1, "ping", "-6", "-c1", "-W2", t.IP6s[1])...); err6 == nil {
			break
		}
	}
	if err6 != nil {
		return nil, fmt.Errorf("cross-host IPv6 path broken: %w", err6)
	}
	return t, nil
}

// LoadRules replaces the host namespace's ruleset with text for nft -f
// (kind "nft") or iptables-restore (kind "ipt"); empty text flushes.
func LoadRules(ctx context.Context, env *Env, ns, kind, text string) error {
	if _, err := Run(ctx, InNS(ns, "nft", "flush", "ruleset")...); err != nil {
		return err
	}
	if text == "" {
		return nil
	}
	f := filepath.Join(env.Tmp, "rules."+kind)
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		return err
	}
	var err error
	switch kind {
	case "nft":
		_, err = Run(ctx, InNS(ns, "nft", "-f", f)...)
	case "ipt":
		_, err = Run(ctx, InNS(ns, "iptables-restore", f)...)
	default:
		err = fmt.Errorf("unknown rules kind %q", kind)
	}
	return err
}

// IptLinear is iptables-restore input with n non-matching rules in the
// FORWARD chain ("-s 172.16.x.y -p tcp --dport 8080 -j DROP": every rule is
// evaluated, none fires — the worst case of a linear chain). With ct, an
// ESTABLISHED,RELATED accept comes first, as Calico's iptables data plane
// emits it.
func IptLinear(n int, ct bool) string {
	var b strings.Builder
	b.WriteString("*filter\n:FORWARD ACCEPT [0:0]\n")
	if ct {
		b.WriteString("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
	}
	for i := range n {
		fmt.Fprintf(&b, "-A FORWARD -s %s/32 -p tcp -m tcp --dport 8080 -j DROP\n", nonMatching(i))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// NftLinear is the same as one nft table (for nft -f).
func NftLinear(n int, ct bool) string {
	var b strings.Builder
	b.WriteString("table inet tbbench {\n  chain fwd {\n    type filter hook forward priority 0; policy accept;\n")
	if ct {
		b.WriteString("    ct state established,related accept\n")
	}
	for i := range n {
		fmt.Fprintf(&b, "    ip saddr %s tcp dport 8080 drop\n", nonMatching(i))
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

func nonMatching(i int) string {
	return fmt.Sprintf("172.%d.%d.%d", 16+i/65536, (i/256)%256, i%256)
}

// Container is a namespace attached through a CNI config list.
type Container struct {
	Name   string
	NS     string
	NSPath string
	ID     string
	IP     string
}

// Attach creates a container namespace and runs CNI ADD for it from inside
// hostNSPath; DEL and the namespace's removal are registered with the Janitor.
func Attach(ctx context.Context, env *Env, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, hostNSPath, name string) (*Container, error) {
	ns := env.Name("c")
	path, err := env.J.Namespace(ns)
	if err != nil {
		return nil, err
	}
	c := &Container{Name: name, NS: ns, NSPath: path, ID: "bench-" + name + "-" + env.RunID}
	rt := &libcni.RuntimeConf{ContainerID: c.ID, NetNS: path, IfName: "eth0"}
	var res *types100.Result
	err = netns.Do(hostNSPath, func() error {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		r, err := cni.AddNetworkList(actx, list, rt)
		if err != nil {
			return err
		}
		res, err = types100.GetResult(r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", name, err)
	}
	env.J.Defer("CNI DEL "+name, func() error {
		return netns.Do(hostNSPath, func() error {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return cni.DelNetworkList(dctx, list, rt)
		})
	})
	if len(res.IPs) == 0 {
		return nil, fmt.Errorf("attach %s: no address in the result", name)
	}
	c.IP = res.IPs[0].Address.IP.String()
	return c, nil
}
