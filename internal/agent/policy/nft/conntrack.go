package nft

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// conntrackDeleter removes connection-tracking entries; the real one talks
// netlink, tests may count calls.
type conntrackDeleter interface {
	deleteFlows(addrs []netip.Addr) error
}

// FlushConntrack deletes every conntrack entry that has one of addrs as
// source or destination, in either direction (so DNATed flows go too).
// Apply calls it for the addresses of local workloads that disappear;
// the agent may call it directly when an endpoint is deleted.
func (d *Driver) FlushConntrack(addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	return d.ct.deleteFlows(addrs)
}

type netlinkConntrack struct{ netnsFD int }

func (n netlinkConntrack) deleteFlows(addrs []netip.Addr) error {
	var h *netlink.Handle
	var err error
	if n.netnsFD != 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(n.netnsFD))
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("flush conntrack: open netlink: %w", err)
	}
	defer h.Close()
	f := addrFilter{}
	var has4, has6 bool
	for _, a := range addrs {
		a = a.Unmap()
		f[a] = struct{}{}
		has4 = has4 || a.Is4()
		has6 = has6 || a.Is6()
	}
	var errs []error
	for _, fam := range []struct {
		on  bool
		fam netlink.InetFamily
	}{{has4, netlink.FAMILY_V4}, {has6, netlink.FAMILY_V6}} {
		if !fam.on {
			continue
		}
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam.fam, f); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flush conntrack of %v: %w", addrs, err)
	}
	return nil
}

// addrFilter matches flows that involve any of its addresses.
type addrFilter map[netip.Addr]struct{}

func (f addrFilter) has(ip []byte) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	_, ok = f[a.Unmap()]
	return ok
}

func (f addrFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return f.has(flow.Forward.SrcIP) || f.has(flow.Forward.DstIP) || f.has(flow.Reverse.SrcIP) || f.has(flow.Reverse.DstIP)
}
