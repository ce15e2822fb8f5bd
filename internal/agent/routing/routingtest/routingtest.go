// Package routingtest gives the routing tests their private network
// topologies: namespaces with unique names (removed in t.Cleanup), veth
// links between them, and "containers" wired the way Tabby wires them
// (a /32 address, a default route via 169.254.1.1, proxy ARP and a /32
// route on the host side). Setup goes through iproute2 (`ip -n`); nothing
// touches the root namespace's links or routes.
//
// It is for tests only and imports testing; production code must not
// import it.
package routingtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// RequireRoot requires root and iproute2 (the privileged tests need
// namespaces): testenv fails the test without them, or skips it under
// -short.
func RequireRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTool(t, "ip")
}

// Suffix is a short random string for unique names.
func Suffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// NewNS creates an empty namespace named prefix+suffix with lo up and
// returns its name; it is deleted in t.Cleanup.
func NewNS(t testing.TB, name string) string {
	t.Helper()
	if _, err := netns.Create(name); err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	IP(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// Path is the path of a namespace made by NewNS.
func Path(name string) string { return netns.Path(name) }

// IP runs iproute2 and fails the test on error; it returns the output.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Exec runs a command inside a namespace and returns its combined output.
func Exec(ns string, name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
	return string(out), err
}

// Sysctl sets a sysctl inside a namespace.
func Sysctl(t testing.TB, ns, key, value string) {
	t.Helper()
	if out, err := Exec(ns, "sysctl", "-q", "-w", key+"="+value); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v\n%s", key, value, ns, err, out)
	}
}

// Veth joins two namespaces with a veth pair: ifA (addrA, e.g.
// 192.0.2.1/24) in nsA and ifB (addrB) in nsB, both up. An empty address
// is not set.
func Veth(t testing.TB, nsA, ifA, addrA, nsB, ifB, addrB string) {
	t.Helper()
	IP(t, "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	for _, e := range []struct{ ns, ifn, addr string }{{nsA, ifA, addrA}, {nsB, ifB, addrB}} {
		if e.addr != "" {
			IP(t, "-n", e.ns, "addr", "add", e.addr, "dev", e.ifn)
		}
		IP(t, "-n", e.ns, "link", "set", e.ifn, "up")
	}
}

// Container makes a namespace name holding addr on eth0, wired to host
// through hostIf the way Tabby wires a workload, and returns its name.
func Container(t testing.TB, host, name, hostIf string, addr netip.Addr) string {
	t.Helper()
	NewNS(t, name)
	IP(t, "-n", host, "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", name)
	IP(t, "-n", host, "link", "set", hostIf, "address", "ee:ee:ee:ee:ee:ee", "up")
	Sysctl(t, host, "net.ipv4.conf."+hostIf+".proxy_arp", "1")
	Sysctl(t, host, "net.ipv4.neigh."+hostIf+".proxy_delay", "0")
	IP(t, "-n", host, "route", "add", addr.String()+"/32", "dev", hostIf, "scope", "link", "proto", "84")
	IP(t, "-n", name, "addr", "add", addr.String()+"/32", "dev", "eth0")
	IP(t, "-n", name, "link", "set", "eth0", "up")
	IP(t, "-n", name, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	IP(t, "-n", name, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	return name
}

// Ping sends count ICMP echoes from ns to addr and returns an error
// (with ping's output) when any is lost.
func Ping(ns string, addr netip.Addr, count int) error {
	out, err := Exec(ns, "ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", "-q", addr.String())
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", addr, ns, err, out)
	}
	return nil
}
