package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// BlockInfo describes one block.
type BlockInfo struct {
	CIDR netip.Prefix
	// Node is the node the block is affine to ("" for none).
	Node string
	// Pool is the pool the block belongs to (nil when in none).
	Pool  *api.IPPool
	Size  int
	InUse int
	// Reserved counts the free addresses of the block that an
	// IPReservation keeps out of use (set by Usage only).
	Reserved int
}

// HandleAddrs lists the addresses a handle holds (none when it does not exist).
func (m *IPAM) HandleAddrs(ctx context.Context, handle string) ([]netip.Addr, error) {
	if err := checkHandle(handle); err != nil {
		return nil, err
	}
	as, _, err := m.handleAllocations(ctx, handle, nil)
	if err != nil {
		return nil, err
	}
	return addrsOf(as), nil
}

// NodeBlocks lists the blocks confirmed affine to node: the routes it
// advertises and the blackholes it keeps. Pending claims are left out.
func (m *IPAM) NodeBlocks(ctx context.Context, node string) ([]BlockInfo, error) {
	if err := checkNode("node", node); err != nil {
		return nil, err
	}
	pools, err := m.readPools(ctx)
	if err != nil {
		return nil, err
	}
	kvs, _, err := m.store.List(ctx, hostPrefix+node+"/")
	if err != nil {
		return nil, fmt.Errorf("read affinities of node %q: %w", node, err)
	}
	var out []BlockInfo
	for _, kv := range kvs {
		n, cidr, err := parseAffinityKey(kv.Key)
		if err != nil || n != node {
			continue
		}
		if a, err := decodeAffinity(kv.Value); err != nil || a.State != StateConfirmed {
			continue
		}
		b, err := m.getBlock(ctx, cidr)
		if errors.Is(err, datastore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if b.affinity != node {
			continue // dangling: the block is someone else's
		}
		out = append(out, blockInfo(b, pools))
	}
	slices.SortFunc(out, func(a, b BlockInfo) int { return comparePrefixes(a.CIDR, b.CIDR) })
	return out, nil
}

func blockInfo(b *block, pools []*pool) BlockInfo {
	return BlockInfo{CIDR: b.cidr, Node: b.affinity, Pool: poolRes(poolFor(pools, b.cidr)), Size: b.size(), InUse: b.inUse()}
}

// Blocks lists every block.
func (m *IPAM) Blocks(ctx context.Context) ([]BlockInfo, error) {
	pools, err := m.readPools(ctx)
	if err != nil {
		return nil, err
	}
	s, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var out []BlockInfo
	for _, b := range s.blockList() {
		out = append(out, blockInfo(b, pools))
	}
	return out, nil
}

// Borrowed lists the addresses node holds in blocks not affine to it:
// each is advertised as a /32 (/128) route.
func (m *IPAM) Borrowed(ctx context.Context, node string) ([]netip.Addr, error) {
	if err := checkNode("node", node); err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, fam := range []int{4, 6} {
		kvs, _, err := m.store.List(ctx, blockKeyPrefix(fam))
		if err != nil {
			return nil, fmt.Errorf("list blocks: %w", err)
		}
		for _, kv := range kvs {
			b, err := decodeBlock(kv.Value)
			if err != nil || b.affinity == node {
				continue
			}
			for o := range b.alloc {
				if b.allocated(o) && b.attrsOf(o)[AttrNode] == node {
					out = append(out, b.addr(o))
				}
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// PoolUsage is one pool's use, for `tabby ipam show`.
type PoolUsage struct {
	Pool  *api.IPPool
	CIDR  netip.Prefix
	Total *big.Int // addresses in the pool
	InUse int
	// Reserved counts the pool's addresses that IPReservations keep out
	// of use and that are not in use (an address reserved after it was
	// allocated counts as in use until it is released).
	Reserved *big.Int
	Blocks   []BlockInfo
}

// Usage is the whole IPAM's use.
type Usage struct {
	Pools []PoolUsage
	// Orphans are blocks in no pool (left from a deleted pool).
	Orphans []BlockInfo
}

// Usage summarizes pools and blocks.
func (m *IPAM) Usage(ctx context.Context) (*Usage, error) {
	pools, err := m.readPools(ctx)
	if err != nil {
		return nil, err
	}
	s, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	res, err := m.readReservations(ctx)
	if err != nil {
		return nil, err
	}
	u := &Usage{}
	idx := map[*pool]int{}
	for _, p := range pools {
		idx[p] = len(u.Pools)
		total := new(big.Int).Lsh(big.NewInt(1), uint(p.cidr.Addr().BitLen()-p.cidr.Bits()))
		u.Pools = append(u.Pools, PoolUsage{Pool: p.res, CIDR: p.cidr, Total: total, Reserved: res.size(p.cidr)})
	}
	for _, b := range s.blockList() {
		bi := blockInfo(b, pools)
		p := poolFor(pools, b.cidr)
		if p == nil {
			u.Orphans = append(u.Orphans, bi)
			continue
		}
		pu := &u.Pools[idx[p]]
		bi.Reserved = b.reservedFree(res)
		// Reserved addresses in use count as in use, not as reserved.
		heldReserved := new(big.Int).Sub(res.size(b.cidr), big.NewInt(int64(bi.Reserved)))
		pu.Reserved.Sub(pu.Reserved, heldReserved)
		pu.InUse += bi.InUse
		pu.Blocks = append(pu.Blocks, bi)
	}
	return u, nil
}

// AddrInfo says who holds an address, for `tabby ipam show --ip`.
type AddrInfo struct {
	Addr netip.Addr
	// Pool holding the address (nil: none).
	Pool *api.IPPool
	// Block holding the address (invalid when no block does); BlockNode
	// is the block's affinity.
	Block     netip.Prefix
	BlockNode string
	Allocated bool
	Handle    string
	Seq       uint64
	Attrs     map[string]string
	// AllocatedAt is the allocation's timestamp attribute, when present.
	AllocatedAt time.Time
	// Endpoints are the workload endpoints ("namespace/name") whose
	// spec.ipamHandle is Handle or that list the address, on existing nodes.
	Endpoints []string
	// Live says whether Handle belongs to a live endpoint or node.
	Live bool
}

// Lookup reports who holds addr.
func (m *IPAM) Lookup(ctx context.Context, addr netip.Addr) (*AddrInfo, error) {
	if !addr.IsValid() || addr.Is4In6() || addr.Zone() != "" {
		return nil, fmt.Errorf("%q is not an IPv4 or IPv6 address", addr)
	}
	pools, err := m.readPools(ctx)
	if err != nil {
		return nil, err
	}
	info := &AddrInfo{Addr: addr}
	if p := poolContaining(pools, addr); p != nil {
		info.Pool = p.res
	}
	cidr, err := m.findBlock(ctx, addr)
	if err != nil && !errors.Is(err, ErrNotAllocated) {
		return nil, err
	}
	if err == nil {
		b, err := m.getBlock(ctx, cidr)
		if err != nil && !errors.Is(err, datastore.ErrNotFound) {
			return nil, err
		}
		if b != nil {
			info.Block, info.BlockNode = b.cidr, b.affinity
			if o, _ := b.ordinal(addr); b.allocated(o) {
				info.Allocated = true
				info.Handle = b.handleOf(o)
				info.Seq = b.seqFor[o]
				info.Attrs = b.attrsOf(o)
				info.AllocatedAt, _ = time.Parse(time.RFC3339, info.Attrs[AttrTimestamp])
			}
		}
	}
	nodes, err := m.LiveNodes(ctx)
	if err != nil {
		return nil, err
	}
	weps, err := m.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	info.Live = info.Allocated && liveHandles(nodes, weps)[info.Handle]
	for _, w := range weps {
		if w.Spec.Node != "" && !nodes[w.Spec.Node] {
			continue
		}
		uses := info.Handle != "" && w.Spec.IPAMHandle == info.Handle
		for _, n := range w.Spec.IPNetworks {
			if pfx, err := api.ParseNet(n); err == nil && pfx.Addr() == addr && pfx.Bits() == addr.BitLen() {
				uses = true
			}
		}
		if uses {
			info.Endpoints = append(info.Endpoints, w.Namespace+"/"+w.Name)
		}
	}
	return info, nil
}
