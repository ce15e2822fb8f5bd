package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
)

// view is what one node's allocations need, as read at known revisions:
// the pools, IPAMConfig, the node's labels and its confirmed affine blocks.
// The IPAM keeps one per node between allocations so that the common
// allocation reads nothing: the transaction that writes the block also
// checks that none of these changed, and a failed check reloads the view.
// Cached blocks are never modified: they are replaced.
type view struct {
	node    string
	pools   []*pool
	config  ipamConfig
	labels  map[string]string
	nodeRev int64 // 0: no Node resource
	own     map[netip.Prefix]*block
	fresh   bool // loaded during the current request
}

func (v *view) copy() *view {
	c := *v
	c.own = maps.Clone(v.own)
	return &c
}

// ownSorted lists the node's blocks of family fam in address order.
func (v *view) ownSorted(fam int) []*block {
	var out []*block
	for _, b := range v.own {
		if b.family() == fam {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *block) int { return comparePrefixes(a.cidr, b.cidr) })
	return out
}

// viewFor returns node's view: the cached one, or a fresh one.
func (m *IPAM) viewFor(ctx context.Context, node string, fresh bool) (*view, error) {
	m.viewsMu.Lock()
	v := m.views[node]
	if v != nil && !fresh {
		c := v.copy()
		m.viewsMu.Unlock()
		c.fresh = false
		return c, nil
	}
	m.viewsMu.Unlock()
	nv, err := m.loadView(ctx, node)
	if err != nil {
		return nil, err
	}
	m.viewsMu.Lock()
	m.views[node] = nv
	c := nv.copy()
	m.viewsMu.Unlock()
	c.fresh = true
	return c, nil
}

func (m *IPAM) loadView(ctx context.Context, node string) (*view, error) {
	v := &view{node: node, own: map[netip.Prefix]*block{}}
	var err error
	if v.pools, err = m.readPools(ctx); err != nil {
		return nil, err
	}
	if v.config, err = m.readConfig(ctx); err != nil {
		return nil, err
	}
	if v.labels, v.nodeRev, err = m.readNode(ctx, node); err != nil {
		return nil, err
	}
	kvs, _, err := m.store.List(ctx, hostPrefix+node+"/")
	if err != nil {
		return nil, fmt.Errorf("read affinities of node %q: %w", node, err)
	}
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
			continue // dangling affinity: GC removes it, check reports it
		}
		if err != nil {
			m.log.Warn("skipping unreadable block", "block", cidr, "error", err)
			continue
		}
		if b.affinity == node && !b.deleted {
			v.own[cidr] = b
		}
	}
	return v, nil
}

// noteBlocks records blocks just written (or deleted, when gone is set)
// in every cached view they belong to.
func (m *IPAM) noteBlocks(bs []*block, gone bool) {
	m.viewsMu.Lock()
	defer m.viewsMu.Unlock()
	for _, v := range m.views {
		for _, b := range bs {
			cur := v.own[b.cidr]
			switch {
			case cur != nil && cur.rev > b.rev:
				// A later write was noted first: keep it.
			case !gone && b.affinity == v.node:
				v.own[b.cidr] = b
			default:
				delete(v.own, b.cidr)
			}
		}
	}
}

// forgetView drops a node's cached view.
func (m *IPAM) forgetView(node string) {
	m.viewsMu.Lock()
	delete(m.views, node)
	m.viewsMu.Unlock()
}

// getBlock reads one block.
func (m *IPAM) getBlock(ctx context.Context, cidr netip.Prefix) (*block, error) {
	kv, err := m.store.Get(ctx, blockKey(cidr))
	if err != nil {
		return nil, fmt.Errorf("read block %s: %w", cidr, err)
	}
	b, err := decodeBlock(kv.Value)
	if err != nil {
		return nil, err
	}
	if b.cidr != cidr {
		return nil, fmt.Errorf("block %s: stored under the key of %s", b.cidr, cidr)
	}
	b.rev = kv.Revision
	return b, nil
}

// affEntry is one stored affinity.
type affEntry struct {
	node string
	cidr netip.Prefix
	v    affinityValue
	key  string
	rev  int64
}

// stalePending reports whether a pending affinity was abandoned.
func (a affEntry) stalePending(now time.Time, timeout time.Duration) bool {
	return a.v.State == StatePending && (a.v.PendingSince == nil || now.Sub(*a.v.PendingSince) >= timeout)
}

// clusterView is every block and affinity of one family, read when the
// node's own blocks are not enough (to claim a new block or to borrow).
// Blocks are decoded only when looked at: a claim needs only the keys.
type clusterView struct {
	m       *IPAM
	fam     int
	raw     map[netip.Prefix]*datastore.KV
	decoded map[netip.Prefix]*block // nil entry: damaged
	sorted  []netip.Prefix          // every stored block, in address order
	affs    map[netip.Prefix][]affEntry
}

func (m *IPAM) loadCluster(ctx context.Context, fam int) (*clusterView, error) {
	cl := &clusterView{m: m, fam: fam, raw: map[netip.Prefix]*datastore.KV{}, decoded: map[netip.Prefix]*block{}, affs: map[netip.Prefix][]affEntry{}}
	kvs, _, err := m.store.List(ctx, blockKeyPrefix(fam))
	if err != nil {
		return nil, fmt.Errorf("list IPv%d blocks: %w", fam, err)
	}
	for _, kv := range kvs {
		cidr, err := parseBlockKey(kv.Key)
		if err != nil {
			continue
		}
		cl.sorted = append(cl.sorted, cidr)
		cl.raw[cidr] = kv
	}
	sort.Slice(cl.sorted, func(i, j int) bool { return comparePrefixes(cl.sorted[i], cl.sorted[j]) < 0 })
	kvs, _, err = m.store.List(ctx, hostPrefix)
	if err != nil {
		return nil, fmt.Errorf("list block affinities: %w", err)
	}
	for _, kv := range kvs {
		node, cidr, err := parseAffinityKey(kv.Key)
		if err != nil || familyOf(cidr.Addr()) != fam {
			continue
		}
		a, err := decodeAffinity(kv.Value)
		if err != nil {
			continue
		}
		cl.affs[cidr] = append(cl.affs[cidr], affEntry{node: node, cidr: cidr, v: a, key: kv.Key, rev: kv.Revision})
	}
	return cl, nil
}

// block returns the stored block cidr, decoded (nil when absent or damaged).
func (cl *clusterView) block(cidr netip.Prefix) *block {
	if b, ok := cl.decoded[cidr]; ok {
		return b
	}
	kv := cl.raw[cidr]
	if kv == nil {
		return nil
	}
	b, err := decodeBlock(kv.Value)
	if err == nil && b.cidr != cidr {
		err = fmt.Errorf("block %s stored under the key of %s", b.cidr, cidr)
	}
	if err != nil {
		cl.m.log.Warn("skipping damaged block (see tabby ipam check)", "key", kv.Key, "error", err)
		b = nil
	} else {
		b.rev = kv.Revision
	}
	cl.decoded[cidr] = b
	return b
}

// taken reports whether a stored block overlaps cidr.
func (cl *clusterView) taken(cidr netip.Prefix) bool {
	return overlapsSorted(cl.sorted, cidr)
}

// overlapsSorted reports whether any prefix of sorted (non-overlapping,
// in address order) overlaps p.
func overlapsSorted(sorted []netip.Prefix, p netip.Prefix) bool {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i].Addr().Compare(p.Addr()) > 0 })
	// sorted[i-1] starts at or before p; sorted[i] starts after p.
	if i > 0 && sorted[i-1].Overlaps(p) {
		return true
	}
	return i < len(sorted) && sorted[i].Overlaps(p)
}

// add records a block just claimed.
func (cl *clusterView) add(b *block) {
	cl.decoded[b.cidr] = b
	cl.affs[b.cidr] = append(cl.affs[b.cidr], affEntry{node: b.affinity, cidr: b.cidr, v: affinityValue{State: StateConfirmed}})
	cl.markTaken(b.cidr)
}

func (cl *clusterView) markTaken(cidr netip.Prefix) {
	i := sort.Search(len(cl.sorted), func(i int) bool { return comparePrefixes(cl.sorted[i], cidr) >= 0 })
	if i < len(cl.sorted) && cl.sorted[i] == cidr {
		return
	}
	cl.sorted = slices.Insert(cl.sorted, i, cidr)
}

// pendingOther names another node whose claim on cidr is pending and not
// yet timed out ("" when there is none).
func (cl *clusterView) pendingOther(cidr netip.Prefix, node string, now time.Time, timeout time.Duration) (string, time.Time) {
	for _, a := range cl.affs[cidr] {
		if a.node != node && a.v.State == StatePending && !a.stalePending(now, timeout) {
			return a.node, *a.v.PendingSince
		}
	}
	return "", time.Time{}
}

// affineCount counts the node's blocks of this family (by its confirmed
// affinities).
func (cl *clusterView) affineCount(node string) int {
	n := 0
	for _, as := range cl.affs {
		for _, a := range as {
			if a.node == node && a.v.State == StateConfirmed {
				n++
			}
		}
	}
	return n
}

// affineTo lists the blocks whose affinity records name node, in address order.
func (cl *clusterView) affineTo(node string) []netip.Prefix {
	var out []netip.Prefix
	for cidr, as := range cl.affs {
		for _, a := range as {
			if a.node == node && a.v.State == StateConfirmed {
				out = append(out, cidr)
			}
		}
	}
	slices.SortFunc(out, comparePrefixes)
	return out
}
