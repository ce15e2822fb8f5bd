package ipam

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
	"github.com/tabbynet/tabby/internal/datastore"
)

// pool is a parsed IPPool.
type pool struct {
	res       *api.IPPool
	name      string
	cidr      netip.Prefix
	blockSize int
	sel       *selector.Selector
	rev       int64
}

var poolKind, _ = api.LookupKind("IPPool")

func (p *pool) key() string { return datastore.ResourceKey(poolKind, "", p.name) }
func (p *pool) family() int { return familyOf(p.cidr.Addr()) }

// String names the pool in messages: "default-ipv4" (10.0.0.0/16).
func (p *pool) String() string { return fmt.Sprintf("%q (%s)", p.name, p.cidr) }

// fits reports whether b is one of the pool's blocks.
func (p *pool) fits(b netip.Prefix) bool {
	return b.Bits() == p.blockSize && p.cidr.Contains(b.Addr()) && b.Addr().Is4() == p.cidr.Addr().Is4()
}

// blockFor is the block of this pool that holds a.
func (p *pool) blockFor(a netip.Addr) netip.Prefix { return blockContaining(a, p.blockSize) }

// selects reports whether the pool's nodeSelector matches the node's labels.
func (p *pool) selects(labels map[string]string) bool { return p.sel.Evaluate(labels) }

// parsePool reads an IPPool resource. The resource was validated when it
// was written; parsePool checks again what allocation relies on, so a pool
// written by another tool can be reported instead of misused.
func parsePool(r *api.IPPool) (*pool, error) {
	s := &r.Spec
	cidr, err := netip.ParsePrefix(s.CIDR)
	if err != nil || cidr.Addr().Zone() != "" || cidr.Addr().Is4In6() {
		return nil, fmt.Errorf("IPPool %q: spec.cidr %q is not a CIDR", r.Name, s.CIDR)
	}
	cidr = cidr.Masked()
	bs := s.EffectiveBlockSize()
	if !validBlockSize(cidr.Addr().Is4(), bs) || bs < cidr.Bits() {
		return nil, fmt.Errorf("IPPool %q: spec.blockSize %d does not fit pool %s", r.Name, bs, cidr)
	}
	sel, err := selector.Parse(s.NodeSelector)
	if err != nil {
		return nil, fmt.Errorf("IPPool %q: spec.nodeSelector: %w", r.Name, err)
	}
	rev, _ := strconv.ParseInt(r.ResourceVersion, 10, 64)
	return &pool{res: r, name: r.Name, cidr: cidr, blockSize: bs, sel: sel, rev: rev}, nil
}

// poolFor finds the pool whose blocks include b.
func poolFor(pools []*pool, b netip.Prefix) *pool {
	for _, p := range pools {
		if p.fits(b) {
			return p
		}
	}
	return nil
}

// poolContaining finds the pool whose CIDR holds a.
func poolContaining(pools []*pool, a netip.Addr) *pool {
	for _, p := range pools {
		if p.cidr.Contains(a) {
			return p
		}
	}
	return nil
}

// candidatePools resolves the pools a request of family fam may use on a
// node: the named ones (names or CIDRs), or every pool of the family; then
// only those enabled, allowing the use, and selecting the node. A named pool
// that is missing or not usable is an error naming it; no usable pool at
// all is an error too.
func candidatePools(pools []*pool, names []string, fam int, use, node string, labels map[string]string) ([]*pool, error) {
	fieldName := fmt.Sprintf("pools%d", fam)
	if len(names) > 0 {
		var out []*pool
		for _, n := range names {
			p := findPool(pools, n)
			if p == nil {
				return nil, fmt.Errorf("%s: IP pool %q not found", fieldName, n)
			}
			if p.family() != fam {
				return nil, fmt.Errorf("%s: IP pool %s is not an IPv%d pool", fieldName, p, fam)
			}
			if why := unusable(p, use, node, labels); why != "" {
				return nil, fmt.Errorf("%s: IP pool %s cannot be used: %s", fieldName, p, why)
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
		return out, nil
	}
	var out []*pool
	var why []string
	for _, p := range pools {
		if p.family() != fam {
			continue
		}
		if w := unusable(p, use, node, labels); w != "" {
			why = append(why, fmt.Sprintf("%s: %s", p, w))
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		msg := fmt.Sprintf("no IPv%d pool can be used by node %q", fam, node)
		if len(why) == 0 {
			msg += ": there is no IPv" + strconv.Itoa(fam) + " IPPool"
		} else {
			msg += " (" + strings.Join(why, "; ") + ")"
		}
		return nil, fmt.Errorf("%s", msg)
	}
	return out, nil
}

func unusable(p *pool, use, node string, labels map[string]string) string {
	switch {
	case p.res.Spec.Disabled:
		return "it is disabled"
	case !p.res.Spec.AllowsUse(use):
		return fmt.Sprintf("its allowedUses %v do not include %s", p.res.Spec.AllowedUses, use)
	case !p.selects(labels):
		return fmt.Sprintf("its nodeSelector %q does not select node %q", p.sel.String(), node)
	}
	return ""
}

// findPool finds a pool by name, or by CIDR.
func findPool(pools []*pool, nameOrCIDR string) *pool {
	for _, p := range pools {
		if p.name == nameOrCIDR {
			return p
		}
	}
	if c, err := netip.ParsePrefix(nameOrCIDR); err == nil {
		for _, p := range pools {
			if p.cidr == c.Masked() {
				return p
			}
		}
	}
	return nil
}

// candidateBlocks walks every block of a pool in an order fixed by the node
// name: start and stride come from a hash of (node, pool), and since the
// number of blocks is a power of two and the stride is odd, the walk visits
// each block exactly once. Different hosts start in different places and
// move apart, so they rarely try to claim the same block at the same time.
// Pools of more than 2^63 blocks are walked over their first 2^63.
type candidateBlocks struct {
	p             *pool
	n             uint64 // number of blocks (a power of two; 0 means 2^64 is not used)
	start, stride uint64
	k             uint64
}

func newCandidateBlocks(p *pool, node string) *candidateBlocks {
	bits := p.blockSize - p.cidr.Bits()
	bits = min(bits, 63)
	n := uint64(1) << bits
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(p.cidr.String()))
	x := h.Sum64()
	h.Write([]byte{1})
	y := h.Sum64()
	return &candidateBlocks{p: p, n: n, start: x & (n - 1), stride: (y | 1) & (n - 1)}
}

// next returns the next block in the walk, or false when all were visited.
func (c *candidateBlocks) next() (netip.Prefix, bool) {
	if c.k >= c.n {
		return netip.Prefix{}, false
	}
	idx := (c.start + c.k*c.stride) & (c.n - 1)
	c.k++
	return subPrefix(c.p.cidr, c.p.blockSize, idx), true
}

// hashOrder is a per-node pseudo-random key to spread hosts over blocks
// (used to order borrowing).
func hashOrder(node string, b netip.Prefix) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(b.String()))
	return h.Sum64()
}

// UsableFamilies says for which families (4, 6) some pool can give a
// workload on node (with labels) an address: enabled, allowing workload
// use, selecting the node; pools that do not parse are ignored. It is what
// "as the pools offer" means when a CNI config leaves assign_ipv4 or
// assign_ipv6 unset. Pure: the caller passes the pools it watches.
func UsableFamilies(pools []*api.IPPool, node string, labels map[string]string) (v4, v6 bool) {
	for _, r := range pools {
		p, err := parsePool(r)
		if err != nil || unusable(p, api.AllowedUseWorkload, node, labels) != "" {
			continue
		}
		if p.family() == 4 {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}
