// Package kernel programs a routing.KernelState into one network namespace
// over netlink: the VXLAN device (vxlan.tabby: VNI, port, tunnel address,
// static FDB and neighbor entries per remote host, learning off), the
// IP-in-IP device (tunl0) and the routes Tabby's router owns.
//
// Ownership: every route the driver makes carries RouteProtocol. Apply reads
// the kernel, compares it with the desired state and changes only what
// differs; routes with another protocol are never changed or removed (a
// desired route whose key a foreign route holds is reported as a conflict
// and left out). Calling Apply again with the same state changes nothing.
// The VXLAN device is Tabby's own, so everything on it is managed; tunl0 is
// shared with the kernel's ipip module and is only configured, never
// removed.
//
// The driver enters a namespace only through internal/netns, to open its
// netlink socket there; the socket stays bound to that namespace.
//
// This package imports internal/agent/routing (types), internal/netns,
// internal/netlinkdump and netlink; it must not import GoBGP, the
// datastore or internal/agent.
package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/netlinkdump"
	"github.com/tabbynet/tabby/internal/netns"
)

// RouteProtocol marks the routes this driver owns (rtnetlink protocol
// number; endpoint wiring uses 84 for its per-container routes, BIRD 12,
// Felix 80).
const RouteProtocol netlink.RouteProtocol = 85

// ErrIPIPUnsupported: the kernel cannot create IP-in-IP devices (no ipip
// module). IP-in-IP pools cannot work on such a host.
var ErrIPIPUnsupported = errors.New("the kernel has no IP-in-IP support (ipip module missing): IP-in-IP routes cannot be programmed")

// Options configure a Driver.
type Options struct {
	// NetNS is the path of the namespace to program; "" is the calling
	// process's namespace.
	NetNS string
	Log   *slog.Logger
}

// ApplyOptions change how Apply treats what is not desired.
type ApplyOptions struct {
	// KeepStale leaves Tabby routes that are not desired in place (while
	// BGP re-learns routes after a restart, so nothing flaps).
	KeepStale bool
}

// Report says what an Apply changed and what it could not do.
type Report struct {
	// Changes lists every change made, e.g. "add route 10.0.0.0/26 via …".
	Changes []string
	// Conflicts are desired routes whose destination a route Tabby did not
	// make holds; they were left out.
	Conflicts []string
	// IPIP is ErrIPIPUnsupported (wrapped) when an IP-in-IP device was
	// wanted and the kernel cannot make one.
	IPIP error
}

// Driver programs one namespace. It is safe for concurrent use (calls are
// serialized).
type Driver struct {
	mu  sync.Mutex
	h   *netlink.Handle
	ns  string
	log *slog.Logger
}

// New opens a netlink socket in the namespace. It starts nothing.
func New(o Options) (*Driver, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Driver{ns: o.NetNS, log: log.With("component", "routing-kernel")}
	err := d.in(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("open netlink socket: %w", err)
		}
		d.h = h
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Close releases the netlink socket.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h != nil {
		d.h.Close()
		d.h = nil
	}
	return nil
}

func (d *Driver) in(fn func() error) error {
	if d.ns == "" {
		return fn()
	}
	return netns.Do(d.ns, fn)
}

// EnableForwarding turns on IPv4 (and, where the host has IPv6, IPv6)
// forwarding in the namespace: container traffic is routed through it.
func (d *Driver) EnableForwarding() error {
	return d.in(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable IPv4 forwarding: %w", err)
		}
		// IPv6 may be disabled on the host; then there is nothing to forward.
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644)
		return nil
	})
}

// Apply makes the namespace match ks, changing only what differs.
// Failures of single objects do not stop the others: they are joined into
// the returned error, and the next Apply tries again.
func (d *Driver) Apply(ks *routing.KernelState, opts ApplyOptions) (Report, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var rep Report
	if d.h == nil {
		return rep, errors.New("kernel driver is closed")
	}
	if ks == nil {
		ks = &routing.KernelState{}
	}
	var errs []error
	if err := d.syncVXLAN(ks, &rep); err != nil {
		errs = append(errs, err)
	}
	if err := d.syncIPIP(ks.IPIP, &rep); err != nil {
		if errors.Is(err, ErrIPIPUnsupported) {
			rep.IPIP = err
		} else {
			errs = append(errs, err)
		}
	}
	if err := d.syncRoutes(ks.Routes, opts, &rep); err != nil {
		errs = append(errs, err)
	}
	for _, c := range rep.Changes {
		d.log.Debug("kernel change", "change", c)
	}
	return rep, errors.Join(errs...)
}

// Routes lists the routes this driver owns, in order.
func (d *Driver) Routes() ([]routing.Route, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		return nil, errors.New("kernel driver is closed")
	}
	krs, err := d.ownRoutes()
	if err != nil {
		return nil, err
	}
	out := make([]routing.Route, 0, len(krs))
	names := linkNames{}
	for _, kr := range krs {
		out = append(out, d.toRoute(kr, names))
	}
	slices.SortFunc(out, routing.CompareRoutes)
	return out, nil
}

// ---- routes ----

// ownRoutes lists the main-table routes carrying RouteProtocol.
func (d *Driver) ownRoutes() ([]netlink.Route, error) {
	var out []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlinkdump.Retry(func() ([]netlink.Route, error) {
			return d.h.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
				netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// linkNames caches interface names by index during one call.
type linkNames map[int]string

func (d *Driver) linkName(idx int, names linkNames) string {
	if idx == 0 {
		return ""
	}
	if n, ok := names[idx]; ok {
		return n
	}
	n := fmt.Sprintf("if%d", idx)
	if l, err := d.h.LinkByIndex(idx); err == nil {
		n = l.Attrs().Name
	}
	names[idx] = n
	return n
}

// toRoute reads a kernel route back into Tabby's form.
func (d *Driver) toRoute(kr netlink.Route, names linkNames) routing.Route {
	r := routing.Route{Dst: prefixOf(kr.Dst, kr.Family)}
	if kr.Type == unix.RTN_BLACKHOLE {
		r.Type = routing.RouteBlackhole
		return r
	}
	r.Gateway = addrOf(kr.Gw)
	r.Dev = d.linkName(kr.LinkIndex, names)
	r.OnLink = kr.Flags&int(netlink.FLAG_ONLINK) != 0
	return r
}

// sameRoute says whether the kernel route is the desired one. A desired
// route without a device accepts whatever device the kernel chose.
func sameRoute(want, got routing.Route) bool {
	if want.Type != got.Type || want.Dst != got.Dst {
		return false
	}
	if want.Type == routing.RouteBlackhole {
		return true
	}
	return want.Gateway == got.Gateway && want.OnLink == got.OnLink && (want.Dev == "" || want.Dev == got.Dev)
}

// toNetlink builds the kernel route for a desired one.
func (d *Driver) toNetlink(r routing.Route) (*netlink.Route, error) {
	kr := &netlink.Route{
		Dst:      ipNet(r.Dst),
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
		Family:   family(r.Dst.Addr()),
	}
	if r.Type == routing.RouteBlackhole {
		kr.Type = unix.RTN_BLACKHOLE
		return kr, nil
	}
	kr.Type = unix.RTN_UNICAST
	if r.Gateway.IsValid() {
		kr.Gw = r.Gateway.AsSlice()
	}
	if r.Dev != "" {
		l, err := d.h.LinkByName(r.Dev)
		if err != nil {
			return nil, fmt.Errorf("route %s: device %s: %w", r, r.Dev, err)
		}
		kr.LinkIndex = l.Attrs().Index
	}
	if r.OnLink {
		kr.Flags = int(netlink.FLAG_ONLINK)
	}
	if !r.Gateway.IsValid() {
		kr.Scope = netlink.SCOPE_LINK
	}
	return kr, nil
}

func (d *Driver) syncRoutes(want []routing.Route, opts ApplyOptions, rep *Report) error {
	krs, err := d.ownRoutes()
	if err != nil {
		return err
	}
	names := linkNames{}
	have := map[netip.Prefix][]netlink.Route{}
	for _, kr := range krs {
		p := prefixOf(kr.Dst, kr.Family)
		have[p] = append(have[p], kr)
	}
	wanted := map[netip.Prefix]bool{}
	var errs []error
	for _, r := range want {
		if !r.Dst.IsValid() || wanted[r.Dst] {
			continue
		}
		wanted[r.Dst] = true
		cur := have[r.Dst]
		if len(cur) == 1 && sameRoute(r, d.toRoute(cur[0], names)) {
			continue
		}
		kr, err := d.toNetlink(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(cur) > 0 {
			// The key holds our route: replacing it touches nothing else.
			for _, extra := range cur[1:] {
				if err := d.h.RouteDel(&extra); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("delete duplicate route %s: %w", d.toRoute(extra, names), err))
				}
			}
			if err := d.h.RouteReplace(kr); err != nil {
				errs = append(errs, fmt.Errorf("replace route %s: %w", r, err))
				continue
			}
			rep.Changes = append(rep.Changes, "replace route "+r.String())
			continue
		}
		err = d.h.RouteAdd(kr)
		switch {
		case errors.Is(err, unix.EEXIST):
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("route %s: the kernel already has a route to %s that Tabby did not make; left alone", r, r.Dst))
		case err != nil:
			errs = append(errs, fmt.Errorf("add route %s: %w", r, err))
		default:
			rep.Changes = append(rep.Changes, "add route "+r.String())
		}
	}
	if opts.KeepStale {
		return errors.Join(errs...)
	}
	for _, kr := range krs {
		r := d.toRoute(kr, names)
		if wanted[r.Dst] {
			continue
		}
		if err := d.h.RouteDel(&kr); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r, err))
			continue
		}
		rep.Changes = append(rep.Changes, "delete route "+r.String())
	}
	return errors.Join(errs...)
}

// ---- conversions ----

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts a route destination; nil is the default route.
func prefixOf(n *net.IPNet, fam int) netip.Prefix {
	if n == nil {
		if fam == netlink.FAMILY_V6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// isUnsupported reports a netlink error meaning "no such link kind".
func isUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) ||
		strings.Contains(err.Error(), "not supported")
}
