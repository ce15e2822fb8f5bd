package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// Wirer wires workload interfaces into the kernel. The host side is the
// network namespace of the calling thread; callers run it in the host
// namespace (the agent process lives there). It keeps no state between
// calls, so it is safe for concurrent use on different endpoints.
type Wirer struct {
	log *slog.Logger
	// afterStep, when set by tests, runs after each step of Add and can
	// fail it, to check that every partial state is undone.
	afterStep func(step string) error
}

// New returns a Wirer that logs state changes to log (nil: discard).
func New(log *slog.Logger) *Wirer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Wirer{log: log.With("component", "endpoint")}
}

// Steps of Add, in order, as passed to afterStep.
const (
	stepVeth      = "veth"      // veth created, peer in the container
	stepHost      = "host"      // host side sysctls set and link up
	stepContainer = "container" // container side configured
	stepRoutes    = "routes"    // host routes and neighbours installed
)

func (w *Wirer) step(name string) error {
	if w.afterStep == nil {
		return nil
	}
	return w.afterStep(name)
}

// Add creates the veth pair for cfg and configures both ends (DESIGN.md §3
// ADD step 3). A stale host interface of the same name is replaced. On
// failure everything Add created is removed again.
func (w *Wirer) Add(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("add endpoint: %w", err)
	}
	cfg = cfg.withDefaults()
	res, err := w.add(ctx, cfg)
	if err != nil {
		return Result{}, fmt.Errorf("add endpoint %s (container %s %s): %w", cfg.HostIfName, cfg.ContainerID, cfg.IfName, err)
	}
	w.log.Info("endpoint added", "host_if", res.HostIfName, "container_id", cfg.ContainerID,
		"if", cfg.IfName, "netns", cfg.NetNS, "addrs", cfg.hostPrefixes())
	return res, nil
}

func (w *Wirer) add(ctx context.Context, cfg Config) (res Result, err error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	nsFile, err := netns.Open(cfg.NetNS)
	if err != nil {
		return Result{}, err
	}
	defer nsFile.Close()
	h, err := newHandle()
	if err != nil {
		return Result{}, err
	}
	defer h.Close()

	// A stale interface of the same name (a previous ADD that was
	// interrupted, or a container ID reused) is replaced, but only once
	// nothing else stands in the way.
	stale, err := linkByName(h, cfg.HostIfName)
	if err != nil {
		return Result{}, err
	}
	staleIndex := -1
	if stale != nil {
		staleIndex = stale.Attrs().Index
	}

	// Refuse before changing anything if an address is routed elsewhere.
	prefixes := cfg.hostPrefixes()
	for _, p := range prefixes {
		rs, err := routesTo(h, p)
		if err != nil {
			return Result{}, err
		}
		for _, r := range rs {
			if r.LinkIndex != staleIndex {
				return Result{}, fmt.Errorf("route to %s already exists on %s, not on %s",
					p, describeRouteDev(h, r), cfg.HostIfName)
			}
		}
	}

	if stale != nil {
		// Its peer, routes and neighbour entries go with it.
		if err := h.LinkDel(stale); err != nil && !isNotFound(err) {
			return Result{}, fmt.Errorf("delete stale interface %s: %w", cfg.HostIfName, err)
		}
		w.log.Warn("deleted stale host interface", "host_if", cfg.HostIfName, "type", stale.Type())
	}

	// Create the pair in the host namespace with the peer born in the
	// container namespace: moving an interface between namespaces is slow
	// (Calico PR 7705: ~15 ms → ~2 ms). Setting the MAC at creation makes
	// udev treat it as set by us and leave it alone.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = cfg.HostIfName
	attrs.MTU = cfg.MTU
	attrs.HardwareAddr = hostMAC
	veth := netlink.NewVeth(attrs)
	veth.PeerName = cfg.IfName
	veth.PeerMTU = uint32(cfg.MTU)
	veth.PeerNamespace = netlink.NsFd(int(nsFile.Fd()))
	if err := h.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			if l, _ := linkByName(h, cfg.HostIfName); l != nil {
				return Result{}, fmt.Errorf("create veth: host interface %s was created concurrently", cfg.HostIfName)
			}
			return Result{}, fmt.Errorf("create veth: interface %s already exists in netns %s", cfg.IfName, cfg.NetNS)
		}
		return Result{}, fmt.Errorf("create veth %s with peer %s in %s: %w", cfg.HostIfName, cfg.IfName, cfg.NetNS, err)
	}
	host, err := h.LinkByName(cfg.HostIfName)
	if err != nil {
		// Practically impossible; the agent's reconcile (List) or the
		// next Add of this name removes the interface.
		return Result{}, fmt.Errorf("look up new interface %s: %w", cfg.HostIfName, err)
	}
	defer func() {
		if err == nil {
			return
		}
		// Deleting the host end deletes the peer, the routes and the
		// neighbour entries with it.
		if derr := h.LinkDel(host); derr != nil && !isNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("undo: delete %s: %w", cfg.HostIfName, derr))
		}
	}()
	if err := w.step(stepVeth); err != nil {
		return Result{}, err
	}

	v4, v6 := cfg.families()
	if err := writeSysctls(hostSysctls(cfg.HostIfName, v4, v6)); err != nil {
		return Result{}, fmt.Errorf("host side: %w", err)
	}
	if v6 {
		// Our own fixed link-local address, present at once: the kernel
		// would generate one only after carrier-up reaches linkwatch (up
		// to a second later), and the container's default route needs it.
		ll := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(GatewayIPv6, 64)), Flags: unix.IFA_F_NODAD}
		if err := h.AddrAdd(host, ll); err != nil {
			return Result{}, fmt.Errorf("host side: add link-local %s to %s: %w", GatewayIPv6, cfg.HostIfName, err)
		}
	}
	if err := h.LinkSetUp(host); err != nil {
		return Result{}, fmt.Errorf("host side: set %s up: %w", cfg.HostIfName, err)
	}
	if err := w.step(stepHost); err != nil {
		return Result{}, err
	}

	var cont netlink.Link
	if err := netns.Do(cfg.NetNS, func() error {
		var err error
		cont, err = configureContainer(cfg, prefixes)
		return err
	}); err != nil {
		return Result{}, fmt.Errorf("container side: %w", err)
	}
	if err := w.step(stepContainer); err != nil {
		return Result{}, err
	}

	for _, p := range prefixes {
		if err := addHostRoute(h, host, p); err != nil {
			return Result{}, err
		}
		if p.Addr().Is4() {
			// Felix's static ARP entry: the host never has to ARP for the
			// workload (it has no IPv4 address of its own on this link).
			n := &netlink.Neigh{LinkIndex: host.Attrs().Index, Family: netlink.FAMILY_V4,
				State: netlink.NUD_PERMANENT, IP: ipOf(p.Addr()), HardwareAddr: cont.Attrs().HardwareAddr}
			if err := h.NeighSet(n); err != nil {
				return Result{}, fmt.Errorf("host side: neighbour %s on %s: %w", p.Addr(), cfg.HostIfName, err)
			}
		}
	}
	if err := w.step(stepRoutes); err != nil {
		return Result{}, err
	}
	// Until the kernel's linkwatch has seen the carrier come up, a new
	// interface transmits through the no-op qdisc, which drops: a
	// container's first SYN, sent the moment ADD returns, was lost on a
	// loaded host and retried a second later. Wait for both ends to be
	// operationally up (microseconds on an idle host).
	cont = waitOperUp(ctx, w.log, h, cont.Attrs().Index, cfg.HostIfName, host.Attrs().Index, nsFile, cont)
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	return Result{
		HostIfName:       cfg.HostIfName,
		HostMAC:          HostMAC,
		ContainerMAC:     cont.Attrs().HardwareAddr.String(),
		ContainerIfIndex: cont.Attrs().Index,
		Sandbox:          cfg.NetNS,
	}, nil
}

// addHostRoute installs the link-scope host route to p through host. The
// same route already on host is fine; on another interface it is an error.
func addHostRoute(h *netlink.Handle, host netlink.Link, p netip.Prefix) error {
	name := host.Attrs().Name
	r := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: ipNet(p), Scope: netlink.SCOPE_LINK, Protocol: RouteProtocol}
	err := h.RouteAdd(r)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("host side: route %s dev %s: %w", p, name, err)
	}
	rs, lerr := routesTo(h, p)
	if lerr != nil {
		return fmt.Errorf("host side: route %s dev %s: %w", p, name, errors.Join(err, lerr))
	}
	for _, existing := range rs {
		if existing.LinkIndex != host.Attrs().Index {
			return fmt.Errorf("host side: route to %s already exists on %s, not on %s", p, describeRouteDev(h, existing), name)
		}
	}
	return nil
}

// configureContainer runs inside the container namespace: it sets the
// sysctls, brings lo and the interface up, adds the addresses and the
// routes via the gateway, and returns the configured interface.
func configureContainer(cfg Config, prefixes []netip.Prefix) (netlink.Link, error) {
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	link, err := h.LinkByName(cfg.IfName)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", cfg.IfName, err)
	}
	v4, v6 := cfg.families()
	if err := writeSysctls(containerSysctls(cfg.IfName, v4, v6, cfg.AllowIPForwarding)); err != nil {
		return nil, err
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return nil, fmt.Errorf("set lo up: %w", err)
		}
	}
	for _, p := range prefixes {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return nil, fmt.Errorf("add address %s to %s: %w", p, cfg.IfName, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", cfg.IfName, err)
	}
	idx := link.Attrs().Index
	if v4 {
		gw := netip.PrefixFrom(GatewayIPv4, 32)
		if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(gw), Scope: netlink.SCOPE_LINK}); err != nil {
			return nil, fmt.Errorf("add route %s dev %s: %w", gw, cfg.IfName, err)
		}
		if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: ipOf(GatewayIPv4)}); err != nil {
			return nil, fmt.Errorf("add default route via %s dev %s: %w", GatewayIPv4, cfg.IfName, err)
		}
		// Saves the first ARP round trip; proxy ARP answers if it is gone.
		n := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: ipOf(GatewayIPv4), HardwareAddr: hostMAC}
		if err := h.NeighSet(n); err != nil {
			return nil, fmt.Errorf("add neighbour %s on %s: %w", GatewayIPv4, cfg.IfName, err)
		}
	}
	if v6 {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: ipOf(GatewayIPv6)}); err != nil {
			return nil, fmt.Errorf("add default route via %s dev %s: %w", GatewayIPv6, cfg.IfName, err)
		}
	}
	// Read back for the MAC the kernel chose.
	link, err = h.LinkByIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", cfg.IfName, err)
	}
	return link, nil
}

// Del removes the workload interface of (containerID, ifName): the host
// end by its derived name, or else the container end inside netnsPath. A
// missing namespace (netnsPath may be empty) or link is success. The host
// routes and neighbour entries go with the interface.
func (w *Wirer) Del(ctx context.Context, containerID, ifName, netnsPath string) error {
	if containerID == "" {
		return fmt.Errorf("delete endpoint: config ContainerID: must not be empty")
	}
	if err := validIfName(ifName); err != nil {
		return fmt.Errorf("delete endpoint: config IfName: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	name := HostIfName(containerID, ifName)
	deleted, err := w.deleteHostIf(name, false)
	if err != nil {
		return fmt.Errorf("delete endpoint %s (container %s %s): %w", name, containerID, ifName, err)
	}
	if deleted {
		w.log.Info("endpoint deleted", "host_if", name, "container_id", containerID, "if", ifName)
		return nil
	}
	// No host end under the derived name: it was renamed by an override,
	// or is already gone. Remove the container end if it is still there.
	if netnsPath == "" || !netns.Exists(netnsPath) {
		return nil
	}
	err = netns.Do(netnsPath, func() error {
		h, err := newHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := linkByName(h, ifName)
		if err != nil || l == nil {
			return err
		}
		if _, ok := l.(*netlink.Veth); !ok {
			w.log.Warn("not deleting container interface: not a veth", "if", ifName, "netns", netnsPath, "type", l.Type())
			return nil
		}
		if err := h.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete %s: %w", ifName, err)
		}
		deleted = true
		return nil
	})
	if err != nil && netns.Exists(netnsPath) {
		return fmt.Errorf("delete endpoint (container %s %s in %s): %w", containerID, ifName, netnsPath, err)
	}
	if deleted {
		w.log.Info("endpoint deleted", "container_id", containerID, "if", ifName, "netns", netnsPath)
	}
	return nil
}

// DeleteHostIf removes a stray host-side workload interface (and, with
// it, its peer and routes). A missing interface is success; a name without
// the "tby" prefix or an interface that is not a veth is refused.
func (w *Wirer) DeleteHostIf(ctx context.Context, name string) error {
	if err := validIfName(name); err != nil {
		return fmt.Errorf("delete host interface: name: %w", err)
	}
	if len(name) <= len(HostIfPrefix) || name[:len(HostIfPrefix)] != HostIfPrefix {
		return fmt.Errorf("delete host interface %q: not a workload interface (no %q prefix)", name, HostIfPrefix)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete host interface %s: %w", name, err)
	}
	deleted, err := w.deleteHostIf(name, true)
	if err != nil {
		return fmt.Errorf("delete host interface %s: %w", name, err)
	}
	if deleted {
		w.log.Info("host interface deleted", "host_if", name)
	}
	return nil
}

// deleteHostIf deletes the named host interface if it exists. With
// vethOnly, an interface of another type is an error.
func (w *Wirer) deleteHostIf(name string, vethOnly bool) (bool, error) {
	h, err := newHandle()
	if err != nil {
		return false, err
	}
	defer h.Close()
	l, err := linkByName(h, name)
	if err != nil || l == nil {
		return false, err
	}
	if _, ok := l.(*netlink.Veth); vethOnly && !ok {
		return false, fmt.Errorf("refusing to delete: a %s, not a veth", l.Type())
	}
	if err := h.LinkDel(l); err != nil {
		if isNotFound(err) || errors.Is(err, unix.ENODEV) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// operUpWait bounds waitOperUp: past it, ADD goes on (the interfaces come
// up on their own; only the first packets would be lost).
const operUpWait = 2 * time.Second

// waitOperUp waits until the host end (in h's namespace) and the
// container end (in ns) are operationally up, and returns the container
// link as last read.
func waitOperUp(ctx context.Context, log *slog.Logger, h *netlink.Handle, contIndex int, hostName string, hostIndex int, ns *os.File, cont netlink.Link) netlink.Link {
	ch, err := netlink.NewHandleAt(vnetns.NsHandle(int(ns.Fd())))
	if err != nil {
		log.Warn("cannot watch the container interface come up", "host_if", hostName, "error", err)
		return cont
	}
	defer ch.Close()
	deadline := time.Now().Add(operUpWait)
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
		hl, herr := h.LinkByIndex(hostIndex)
		cl, cerr := ch.LinkByIndex(contIndex)
		if herr == nil && cerr == nil {
			cont = cl
			if hl.Attrs().OperState == netlink.OperUp && cl.Attrs().OperState == netlink.OperUp {
				return cont
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log.Warn("interfaces not operationally up yet; the container's first packets may be lost", "host_if", hostName, "wait", operUpWait)
			return cont
		}
		time.Sleep(delay)
	}
}
