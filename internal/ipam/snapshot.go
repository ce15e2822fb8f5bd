package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// snapshot is all IPAM state read in ONE List, so its parts agree with each
// other (a handle and the block it points to are from the same revision).
type snapshot struct {
	rev     int64
	blocks  map[netip.Prefix]*block
	sorted  []netip.Prefix // every block key, usable or not, in address order
	damaged []damagedKey
	affs    []affEntry
	handles map[string]handleEntry
}

type handleEntry struct {
	v   handleValue
	rev int64
}

type damagedKey struct {
	key string
	err error
}

func (m *IPAM) snapshot(ctx context.Context) (*snapshot, error) {
	kvs, rev, err := m.store.List(ctx, datastore.IPAMPrefix)
	if err != nil {
		return nil, fmt.Errorf("read IPAM state: %w", err)
	}
	s := &snapshot{rev: rev, blocks: map[netip.Prefix]*block{}, handles: map[string]handleEntry{}}
	for _, kv := range kvs {
		switch {
		case strings.HasPrefix(kv.Key, assignmentPrefix):
			cidr, err := parseBlockKey(kv.Key)
			if err != nil {
				s.damaged = append(s.damaged, damagedKey{kv.Key, err})
				continue
			}
			s.sorted = append(s.sorted, cidr)
			b, err := decodeBlock(kv.Value)
			if err == nil && b.cidr != cidr {
				err = fmt.Errorf("block %s stored under the key of %s", b.cidr, cidr)
			}
			if err != nil {
				s.damaged = append(s.damaged, damagedKey{kv.Key, err})
				continue
			}
			b.rev = kv.Revision
			s.blocks[cidr] = b
		case strings.HasPrefix(kv.Key, hostPrefix):
			node, cidr, err := parseAffinityKey(kv.Key)
			if err != nil {
				s.damaged = append(s.damaged, damagedKey{kv.Key, err})
				continue
			}
			a, err := decodeAffinity(kv.Value)
			if err != nil {
				s.damaged = append(s.damaged, damagedKey{kv.Key, err})
				continue
			}
			s.affs = append(s.affs, affEntry{node: node, cidr: cidr, v: a, key: kv.Key, rev: kv.Revision})
		case strings.HasPrefix(kv.Key, handlePrefix):
			id, err := parseHandleKey(kv.Key)
			if err != nil {
				s.damaged = append(s.damaged, damagedKey{kv.Key, err})
				continue
			}
			hv, err := decodeHandle(kv.Value)
			if err != nil {
				s.damaged = append(s.damaged, damagedKey{kv.Key, err})
				continue
			}
			s.handles[id] = handleEntry{v: hv, rev: kv.Revision}
		}
	}
	sort.Slice(s.sorted, func(i, j int) bool { return comparePrefixes(s.sorted[i], s.sorted[j]) < 0 })
	return s, nil
}

// nodeSnapshot is the part of the IPAM state one node's GC pass needs:
// the node's affinities (one List of host/<node>/) and the blocks they
// name that are affine to the node (one Get each). Its cost is the
// node's own block count, whatever the size of the cluster. Unlike
// snapshot it is not read at one revision; every write GC derives from it
// is compare-and-swap on the revisions read, so a block that changed in
// between makes that write fail, never clobber. It holds no handles.
func (m *IPAM) nodeSnapshot(ctx context.Context, node string) (*snapshot, error) {
	kvs, rev, err := m.store.List(ctx, hostPrefix+node+"/")
	if err != nil {
		return nil, fmt.Errorf("read affinities of node %q: %w", node, err)
	}
	s := &snapshot{rev: rev, blocks: map[netip.Prefix]*block{}, handles: map[string]handleEntry{}}
	for _, kv := range kvs {
		n, cidr, err := parseAffinityKey(kv.Key)
		if err != nil || n != node {
			s.damaged = append(s.damaged, damagedKey{kv.Key, err})
			continue
		}
		a, err := decodeAffinity(kv.Value)
		if err != nil {
			s.damaged = append(s.damaged, damagedKey{kv.Key, err})
			continue
		}
		s.affs = append(s.affs, affEntry{node: node, cidr: cidr, v: a, key: kv.Key, rev: kv.Revision})
		if _, ok := s.blocks[cidr]; ok {
			continue
		}
		bkv, err := m.store.Get(ctx, blockKey(cidr))
		if errors.Is(err, datastore.ErrNotFound) {
			continue // dangling: GC removes the affinity
		}
		if err != nil {
			return nil, fmt.Errorf("read block %s: %w", cidr, err)
		}
		b, err := decodeBlock(bkv.Value)
		if err == nil && b.cidr != cidr {
			err = fmt.Errorf("block %s stored under the key of %s", b.cidr, cidr)
		}
		if err != nil {
			// Damaged: leave its affinity alone too (without the block it
			// would look dangling); tabby ipam check reports it.
			s.damaged = append(s.damaged, damagedKey{bkv.Key, err})
			s.affs = s.affs[:len(s.affs)-1]
			continue
		}
		b.rev = bkv.Revision
		s.sorted = append(s.sorted, cidr)
		if b.affinity == node {
			s.blocks[cidr] = b
		}
	}
	sort.Slice(s.sorted, func(i, j int) bool { return comparePrefixes(s.sorted[i], s.sorted[j]) < 0 })
	return s, nil
}

// blockList is the usable blocks in address order.
func (s *snapshot) blockList() []*block {
	out := make([]*block, 0, len(s.blocks))
	for _, cidr := range s.sorted {
		if b := s.blocks[cidr]; b != nil {
			out = append(out, b)
		}
	}
	return out
}

// blockOf finds the block holding a.
func (s *snapshot) blockOf(a netip.Addr) *block {
	i := sort.Search(len(s.sorted), func(i int) bool { return s.sorted[i].Addr().Compare(a) > 0 })
	if i > 0 && s.sorted[i-1].Contains(a) {
		return s.blocks[s.sorted[i-1]]
	}
	return nil
}

// affinity finds the affinity of node for cidr.
func (s *snapshot) affinity(node string, cidr netip.Prefix) (affEntry, bool) {
	for _, a := range s.affs {
		if a.node == node && a.cidr == cidr {
			return a, true
		}
	}
	return affEntry{}, false
}

// allocation is one allocated ordinal seen in a snapshot.
type allocation struct {
	b      *block
	ord    int
	addr   netip.Addr
	handle string
	node   string
	seq    uint64
	attrs  map[string]string
}

// allocations lists every allocation in the snapshot, in address order.
func (s *snapshot) allocations() []allocation {
	var out []allocation
	for _, b := range s.blockList() {
		for o := range b.alloc {
			if !b.allocated(o) {
				continue
			}
			attrs := b.attrsOf(o)
			out = append(out, allocation{b: b, ord: o, addr: b.addr(o), handle: b.handleOf(o), node: attrs[AttrNode], seq: b.seqFor[o], attrs: attrs})
		}
	}
	return out
}

// LiveNodes lists the nodes that exist (Node resources).
func (m *IPAM) LiveNodes(ctx context.Context) (map[string]bool, error) {
	rs, _, err := m.client.List(ctx, "Node", "")
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := make(map[string]bool, len(rs))
	for _, r := range rs {
		out[r.GetObjectMeta().Name] = true
	}
	return out, nil
}

// endpointHandles reads the WorkloadEndpoints.
func (m *IPAM) endpoints(ctx context.Context) ([]*api.WorkloadEndpoint, error) {
	rs, _, err := m.client.List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		return nil, fmt.Errorf("list workload endpoints: %w", err)
	}
	out := make([]*api.WorkloadEndpoint, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.(*api.WorkloadEndpoint))
	}
	return out, nil
}

// LiveHandles lists the handles that belong to something alive: the
// spec.ipamHandle of every WorkloadEndpoint on an existing node, and the
// tunnel address handles of every existing node.
func (m *IPAM) LiveHandles(ctx context.Context) (map[string]bool, error) {
	nodes, err := m.LiveNodes(ctx)
	if err != nil {
		return nil, err
	}
	weps, err := m.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	return liveHandles(nodes, weps), nil
}

// LiveHandlesOf is LiveHandles computed from nodes and endpoints the
// caller already has (an agent's watch cache), reading nothing.
func LiveHandlesOf(nodes map[string]bool, weps []*api.WorkloadEndpoint) map[string]bool {
	return liveHandles(nodes, weps)
}

func liveHandles(nodes map[string]bool, weps []*api.WorkloadEndpoint) map[string]bool {
	live := map[string]bool{}
	for n := range nodes {
		live[VXLANTunnelHandlePrefix+n] = true
		live[IPIPTunnelHandlePrefix+n] = true
	}
	for _, w := range weps {
		if w.Spec.IPAMHandle != "" && (w.Spec.Node == "" || nodes[w.Spec.Node]) {
			live[w.Spec.IPAMHandle] = true
		}
	}
	return live
}

// ReleaseNode releases everything of a node that no longer exists: the
// addresses its workloads and tunnels held (in any block), its affinities,
// and its blocks — deleted when empty, otherwise left without affinity for
// the hosts still borrowing from them. It refuses while the Node resource
// exists, since the node's agent would go on using its blocks.
func (m *IPAM) ReleaseNode(ctx context.Context, node string) error {
	if err := checkNode("node", node); err != nil {
		return fmt.Errorf("release node: %w", err)
	}
	if _, rev, err := m.readNode(ctx, node); err != nil {
		return err
	} else if rev != 0 {
		return fmt.Errorf("release node %q: the node still exists; delete the Node resource first", node)
	}
	_, err := m.releaseNode(ctx, node)
	return err
}

// releaseNode does ReleaseNode's work and returns what it freed.
func (m *IPAM) releaseNode(ctx context.Context, node string) ([]netip.Addr, error) {
	var freed []netip.Addr
	var lastErr error
	for range datastore.MaxRetries {
		s, err := m.snapshot(ctx)
		if err != nil {
			return freed, err
		}
		// 1. The node's allocations, one handle at a time (all of a handle or none).
		byHandle := map[string][]allocRef{}
		for _, a := range s.allocations() {
			if a.node == node {
				seq := a.seq
				byHandle[a.handle] = append(byHandle[a.handle], allocRef{addr: a.addr, block: a.b.cidr, handle: a.handle, seq: &seq})
			}
		}
		for _, h := range sortedKeys(byHandle) {
			got, err := m.releaseRefs(ctx, byHandle[h])
			if err != nil {
				return freed, fmt.Errorf("release node %q: %w", node, err)
			}
			freed = append(freed, got...)
		}
		if len(byHandle) > 0 {
			if s, err = m.snapshot(ctx); err != nil {
				return freed, err
			}
		}
		// 2. Its blocks and affinities.
		conflict := false
		done := map[string]bool{}
		for _, b := range s.blockList() {
			if b.affinity != node {
				continue
			}
			ops := []datastore.Op{{Type: datastore.OpDelete, Key: b.key(), Revision: b.rev}}
			if !b.empty() {
				c := b.clone()
				c.affinity = ""
				ops[0] = datastore.Op{Type: datastore.OpUpdate, Key: c.key(), Value: c.encode(), Revision: b.rev}
			}
			if a, ok := s.affinity(node, b.cidr); ok {
				ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: a.key, Revision: a.rev})
				done[a.key] = true
			}
			if _, err := m.store.Txn(ctx, ops); err != nil {
				if errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrNotFound) {
					conflict, lastErr = true, err
					continue
				}
				return freed, fmt.Errorf("release node %q: block %s: %w", node, b.cidr, err)
			}
			m.noteBlocks([]*block{b}, true)
			m.log.Info("released block of a deleted node", "node", node, "block", b.cidr, "inUse", b.inUse())
		}
		for _, a := range s.affs {
			if a.node != node || done[a.key] {
				continue
			}
			if err := m.store.Delete(ctx, a.key, a.rev); err != nil && !errors.Is(err, datastore.ErrNotFound) {
				if errors.Is(err, datastore.ErrConflict) {
					conflict, lastErr = true, err
					continue
				}
				return freed, fmt.Errorf("release node %q: affinity %s: %w", node, a.cidr, err)
			}
		}
		m.forgetView(node)
		if !conflict {
			slices.SortFunc(freed, netip.Addr.Compare)
			return freed, nil
		}
	}
	return freed, fmt.Errorf("release node %q: gave up after %d attempts: %w", node, datastore.MaxRetries, lastErr)
}
