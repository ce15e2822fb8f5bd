package endpoint

// Test environment for the privileged tests, shared with the external
// test package (contract_test.go): a test "host" namespace with a veth
// uplink, container namespaces, and a Dataplane that runs in the host.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// Addresses of the test host's uplink.
const (
	testUplink    = "up0"
	testUplinkMTU = 1450
)

// RequireRoot is testenv.NeedRoot: root, or a failure (a skip under -short).
func RequireRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
}

func uniqueSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// NewTestNetNS creates an empty namespace named prefix+random, deleted at
// the end of the test.
func NewTestNetNS(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + uniqueSuffix(t)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return path
}

// RemoveTestNetNS deletes a namespace made by NewTestNetNS early.
func RemoveTestNetNS(t testing.TB, path string) {
	t.Helper()
	if err := netns.Delete(path[strings.LastIndex(path, "/")+1:]); err != nil {
		t.Fatalf("delete netns %s: %v", path, err)
	}
}

// InNS runs fn in the namespace at path, failing the test on error.
func InNS(t testing.TB, path string, fn func() error) {
	t.Helper()
	if err := netns.Do(path, fn); err != nil {
		t.Fatal(err)
	}
}

// NewTestHost creates a namespace that plays a host: lo up, an uplink
// up0 (one end of a veth pair) (MTU 1450, 192.0.2.10/24, 2001:db8:1::10/64) carrying the
// default routes, and forwarding on.
func NewTestHost(t testing.TB) string {
	t.Helper()
	path := NewTestNetNS(t, "tbyt-host-")
	InNS(t, path, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = testUplink, testUplinkMTU
		// This kernel has no dummy driver: a veth pair stands in for the uplink.
		veth := netlink.NewVeth(attrs)
		veth.PeerName = testUplink + "p"
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		up, err := netlink.LinkByName(testUplink)
		if err != nil {
			return err
		}
		peer, err := netlink.LinkByName(veth.PeerName)
		if err != nil {
			return err
		}
		// No kernel-generated link-local addresses: they appear
		// asynchronously and would make before/after snapshots differ.
		for _, name := range []string{testUplink, veth.PeerName} {
			if err := writeSysctls([]sysctl{{"net/ipv6/conf/" + name + "/addr_gen_mode", "1"}}); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(peer); err != nil {
			return err
		}
		for _, a := range []string{"192.0.2.10/24", "2001:db8:1::10/64"} {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return err
			}
			addr.Flags = unix.IFA_F_NODAD
			if err := netlink.AddrAdd(up, addr); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(up); err != nil {
			return err
		}
		for _, gw := range []string{"192.0.2.1", "2001:db8:1::1"} {
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
				return err
			}
		}
		return writeSysctls([]sysctl{{"net/ipv4/ip_forward", "1"}, {"net/ipv6/conf/all/forwarding", "1"}})
	})
	return path
}

// HostDP runs a Dataplane's methods inside a host namespace, as the agent
// process would run there.
type HostDP struct {
	DP   Dataplane
	Host string
}

var _ Dataplane = HostDP{}

func (h HostDP) Add(ctx context.Context, cfg Config) (res Result, err error) {
	err = netns.Do(h.Host, func() error { res, err = h.DP.Add(ctx, cfg); return err })
	return res, err
}

func (h HostDP) Del(ctx context.Context, containerID, ifName, netnsPath string) error {
	return netns.Do(h.Host, func() error { return h.DP.Del(ctx, containerID, ifName, netnsPath) })
}

func (h HostDP) Check(ctx context.Context, cfg Config) error {
	return netns.Do(h.Host, func() error { return h.DP.Check(ctx, cfg) })
}

func (h HostDP) List(ctx context.Context) (eps []HostEndpoint, err error) {
	err = netns.Do(h.Host, func() error { eps, err = h.DP.List(ctx); return err })
	return eps, err
}

func (h HostDP) DeleteHostIf(ctx context.Context, name string) error {
	return netns.Do(h.Host, func() error { return h.DP.DeleteHostIf(ctx, name) })
}
