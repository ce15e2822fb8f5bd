package endpoint

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netlinkdump"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// linkView is what the tests compare of an interface.
type linkView struct {
	Name, Type, MAC string
	Up              bool
	MTU             int
}

// routeView is what the tests compare of a route.
type routeView struct {
	Dst, Gw  string
	Scope    netlink.Scope
	Protocol netlink.RouteProtocol
}

// nsSnapshot is the state of one namespace as read back with netlink.
type nsSnapshot struct {
	Links   map[string]linkView
	Index   map[string]int
	Addrs   map[string][]string    // by link: addresses, link-local v6 excluded
	LL      map[string][]string    // by link: IPv6 link-local addresses
	Routes  map[string][]routeView // by link: main table, proto kernel excluded
	Neighs  map[string][]string    // by link: permanent entries "ip mac"
	Sysctls map[string]string
}

// snapshot reads the calling thread's namespace; run it inside netns.Do.
// keys are sysctls relative to /proc/sys (missing ones read as "ENOENT").
func snapshot(keys ...string) (nsSnapshot, error) {
	s := nsSnapshot{Links: map[string]linkView{}, Index: map[string]int{}, Addrs: map[string][]string{},
		LL: map[string][]string{}, Routes: map[string][]routeView{}, Neighs: map[string][]string{}, Sysctls: map[string]string{}}
	links, err := netlinkdump.Retry(netlink.LinkList)
	if err != nil {
		return s, err
	}
	for _, l := range links {
		a := l.Attrs()
		s.Links[a.Name] = linkView{Name: a.Name, Type: l.Type(), MAC: a.HardwareAddr.String(), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU}
		s.Index[a.Name] = a.Index
		addrs, err := netlinkdump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return s, err
		}
		for _, ad := range addrs {
			if ad.IP.To4() == nil && ad.IP.IsLinkLocalUnicast() {
				s.LL[a.Name] = append(s.LL[a.Name], ad.IPNet.String())
				continue
			}
			s.Addrs[a.Name] = append(s.Addrs[a.Name], ad.IPNet.String())
		}
		routes, err := netlinkdump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return s, err
		}
		for _, r := range routes {
			if r.Protocol == unix.RTPROT_KERNEL {
				continue
			}
			v := routeView{Dst: "default", Scope: r.Scope, Protocol: r.Protocol}
			if !isDefault(r) {
				v.Dst = r.Dst.String()
			}
			if r.Gw != nil {
				v.Gw = r.Gw.String()
			}
			s.Routes[a.Name] = append(s.Routes[a.Name], v)
		}
		slices.SortFunc(s.Routes[a.Name], func(x, y routeView) int { return strings.Compare(x.Dst, y.Dst) })
		neighs, err := netlinkdump.Retry(func() ([]netlink.Neigh, error) { return netlink.NeighList(a.Index, netlink.FAMILY_ALL) })
		if err != nil {
			return s, err
		}
		for _, n := range neighs {
			if n.State&netlink.NUD_PERMANENT != 0 {
				s.Neighs[a.Name] = append(s.Neighs[a.Name], n.IP.String()+" "+n.HardwareAddr.String())
			}
		}
	}
	for _, k := range keys {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			s.Sysctls[k] = "ENOENT"
			continue
		}
		s.Sysctls[k] = strings.TrimSpace(string(b))
	}
	return s, nil
}

func takeSnapshot(t testing.TB, path string, keys ...string) nsSnapshot {
	t.Helper()
	var s nsSnapshot
	InNS(t, path, func() error {
		var err error
		s, err = snapshot(keys...)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", path, err)
		}
		return nil
	})
	return s
}

// workloadLinks returns the names of the tby* interfaces in s.
func workloadLinks(s nsSnapshot) []string {
	var out []string
	for name := range s.Links {
		if strings.HasPrefix(name, HostIfPrefix) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// linkNames returns every interface name in s, sorted.
func linkNames(s nsSnapshot) []string {
	var out []string
	for name := range s.Links {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
