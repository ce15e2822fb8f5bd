package router

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// IPAM attribute types of tunnel addresses (Calico's).
const (
	vxlanAttrType = "vxlanTunnelAddress"
	ipipAttrType  = "ipipTunnelAddress"
)

// tunnelFields are the Node fields the router owns.
type tunnelFields struct {
	vxlanAddr, vxlanMAC, ipipAddr string
}

func fieldsOf(n *api.Node) tunnelFields {
	f := tunnelFields{vxlanAddr: n.Spec.IPv4VXLANTunnelAddr, vxlanMAC: n.Spec.VXLANTunnelMACAddr}
	if n.Spec.BGP != nil {
		f.ipipAddr = n.Spec.BGP.IPv4IPIPTunnelAddr
	}
	return f
}

// ensureTunnels gives this node the tunnel addresses the plan needs (from
// the plan's pools, through IPAM with handle vxlan-tunnel-addr-<node> or
// ipip-tunnel-addr-<node>) and a VXLAN MAC (also without an IPv4 address
// when an IPv6 pool uses VXLAN), and releases those it no
// longer needs. The Node is written with compare-and-swap; the change comes
// back through the agent's next Update.
func (r *Router) ensureTunnels(ctx context.Context, in *routing.Input, p *routing.Plan) error {
	var self *api.Node
	for _, n := range in.Nodes {
		if n.Name == r.cfg.Node {
			self = n
		}
	}
	if self == nil {
		return nil // the agent registers the Node; nothing to write into yet
	}
	cur := fieldsOf(self)
	want := cur
	var errs []error
	vx, err := r.tunnelAddr(ctx, ipam.VXLANTunnelHandlePrefix+r.cfg.Node, vxlanAttrType, p.VXLANTunnel, cur.vxlanAddr)
	if err != nil {
		errs = append(errs, err)
	} else {
		want.vxlanAddr = vx
	}
	newMAC := false
	if want.vxlanAddr == "" && !p.VXLANMAC {
		want.vxlanMAC = ""
	} else if _, err := net.ParseMAC(want.vxlanMAC); err != nil {
		want.vxlanMAC, newMAC = randomMAC(), true
	}
	ip, err := r.tunnelAddr(ctx, ipam.IPIPTunnelHandlePrefix+r.cfg.Node, ipipAttrType, p.IPIPTunnel, cur.ipipAddr)
	if err != nil {
		errs = append(errs, err)
	} else {
		want.ipipAddr = ip
	}
	if want != cur {
		if err := r.writeTunnelFields(ctx, want, newMAC); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tunnelAddr returns the address the node should have for one tunnel kind
// ("" for none), allocating or releasing through IPAM as needed.
func (r *Router) tunnelAddr(ctx context.Context, handle, attrType string, need routing.TunnelNeed, cur string) (string, error) {
	if !need.Want {
		if cur == "" {
			return "", nil
		}
		if _, err := r.ipam.ReleaseHandle(ctx, handle); err != nil {
			return cur, fmt.Errorf("release tunnel address %s: %w", cur, err)
		}
		r.log.Info("released tunnel address: no pool needs it", "handle", handle, "addr", cur)
		return "", nil
	}
	if a, err := netip.ParseAddr(cur); err == nil && need.Has(a) {
		return cur, nil
	}
	held, err := r.ipam.HandleAddrs(ctx, handle)
	if err != nil {
		return cur, fmt.Errorf("read tunnel handle %s: %w", handle, err)
	}
	for _, a := range held {
		if a.Is4() && need.Has(a) {
			return a.String(), nil // allocated before a crash, or the Node write was lost
		}
	}
	if len(held) > 0 {
		if _, err := r.ipam.ReleaseHandle(ctx, handle); err != nil {
			return cur, fmt.Errorf("release tunnel address outside the tunnel pools: %w", err)
		}
	}
	as, err := r.ipam.Allocate(ctx, ipam.Request{
		Handle: handle, Node: r.cfg.Node, IPv4: 1, Pools4: need.Pools, Use: api.AllowedUseTunnel,
		Attrs: ipam.Attributes{Type: attrType},
	})
	if err != nil {
		return cur, fmt.Errorf("allocate tunnel address from %v: %w", need.Pools, err)
	}
	r.log.Info("allocated tunnel address", "handle", handle, "addr", as[0].Addr)
	return as[0].Addr.String(), nil
}

// writeTunnelFields stores the tunnel fields in this node's Node, with
// compare-and-swap; only these fields are touched (the agent writes the
// others). A newly made MAC gives way to one the stored Node already has
// (the agent's view may lag behind the last write).
func (r *Router) writeTunnelFields(ctx context.Context, f tunnelFields, newMAC bool) error {
	for range datastore.MaxRetries {
		res, err := r.client.Get(ctx, "Node", "", r.cfg.Node)
		if errors.Is(err, datastore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read node %s: %w", r.cfg.Node, err)
		}
		n := res.(*api.Node)
		if _, err := net.ParseMAC(n.Spec.VXLANTunnelMACAddr); newMAC && err == nil {
			f.vxlanMAC = n.Spec.VXLANTunnelMACAddr
		}
		if fieldsOf(n) == f {
			return nil
		}
		n.Spec.IPv4VXLANTunnelAddr, n.Spec.VXLANTunnelMACAddr = f.vxlanAddr, f.vxlanMAC
		if f.ipipAddr != "" && n.Spec.BGP == nil {
			n.Spec.BGP = &api.NodeBGPSpec{}
		}
		if n.Spec.BGP != nil {
			n.Spec.BGP.IPv4IPIPTunnelAddr = f.ipipAddr
		}
		_, err = r.client.Update(ctx, n)
		if errors.Is(err, datastore.ErrConflict) {
			continue // someone (the agent's heartbeat) wrote it meanwhile: re-read
		}
		if err != nil {
			return fmt.Errorf("write tunnel addresses of node %s: %w", r.cfg.Node, err)
		}
		r.log.Info("node tunnel addresses written", "vxlan", f.vxlanAddr, "vxlanMAC", f.vxlanMAC, "ipip", f.ipipAddr)
		return nil
	}
	return fmt.Errorf("write tunnel addresses of node %s: %w (gave up after %d attempts)", r.cfg.Node, datastore.ErrConflict, datastore.MaxRetries)
}

// randomMAC is a random locally administered unicast MAC.
func randomMAC() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	b[0] = b[0]&0xfe | 0x02
	return net.HardwareAddr(b).String()
}
