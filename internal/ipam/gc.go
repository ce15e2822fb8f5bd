package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
)

// GCOptions scope and tune one GC pass.
type GCOptions struct {
	// Node limits the pass to what one node's agent collects: the blocks
	// affine to Node (every allocation in them, whoever holds it) and
	// Node's affinities. It reads only that node's affinity keys and the
	// blocks they name, so its cost does not grow with the cluster. ""
	// is the cluster-wide pass (one elected agent runs it): every block,
	// unaffine blocks, missing affinities, handle records, and nodes
	// that were deleted.
	Node string
	// LiveHandles lists the handles in use (default: IPAM.LiveHandles,
	// i.e. WorkloadEndpoints on existing nodes and the nodes' tunnel
	// handles). An agent passes its watch cache here.
	LiveHandles func(ctx context.Context) (map[string]bool, error)
	// RecheckHandles is read just before anything is released, and only
	// then (default: LiveHandles). Pass an authoritative datastore read
	// when LiveHandles is a cache.
	RecheckHandles func(ctx context.Context) (map[string]bool, error)
	// LiveNodes lists the nodes that exist (default: Node resources).
	LiveNodes func(ctx context.Context) (map[string]bool, error)
	// Keep says an allocation is never a leak, whatever its handle (e.g.
	// the agent's tabby-ipam allocations, which have no endpoint).
	Keep func(attrs map[string]string) bool
	// Grace is how long an allocation must be seen leaked, and a node
	// seen gone, before GC releases it (default: IPAMConfig
	// leakGracePeriod, 15 minutes).
	Grace time.Duration
	// Now is the clock (default: the IPAM's).
	Now func() time.Time
}

// GCReport says what a pass did.
type GCReport struct {
	// Released are the leaked allocations freed.
	Released []Leak
	// Waiting counts leak candidates still inside the grace period.
	Waiting int
	// BlocksReleased are empty blocks returned to their pool.
	BlocksReleased []netip.Prefix
	// AffinitiesRemoved are abandoned or dangling affinities deleted ("node block").
	AffinitiesRemoved []string
	// AffinitiesRestored are missing affinities written again ("node block").
	AffinitiesRestored []string
	// HandlesRemoved are handle records that held nothing.
	HandlesRemoved []string
	// NodesReleased are deleted nodes whose blocks were released.
	NodesReleased []string
	// Warnings explain what the pass chose not to do.
	Warnings []string
}

// Leak is an allocation whose handle belongs to nothing alive.
type Leak struct {
	Addr   netip.Addr
	Handle string
	Node   string
	Seq    uint64
}

// gcState is what GC remembers between passes, per scope (node or "").
type gcState map[string]*gcScope

type gcScope struct {
	leaks    map[leakKey]time.Time // first seen
	empty    map[netip.Prefix]int  // consecutive passes seen empty
	gone     map[string]time.Time  // node first seen deleted
	lastPass time.Time
}

type leakKey struct {
	addr   netip.Addr
	handle string
	seq    uint64
}

// GC releases what belongs to nothing alive. It needs no orchestrator: the
// live set is the datastore's WorkloadEndpoints and Nodes.
//
//   - An allocation whose handle is not live is released once it has been
//     seen leaked for Grace (on passes of this IPAM) and was allocated more
//     than Grace ago; liveness is re-read just before, and a handle is
//     released only when every one of its allocations is due (calico#5044:
//     GC freed a healthy pod's IPv4 because its IPv6 looked leaked). The
//     release names handle and sequence number, so it cannot free a newer
//     allocation of the same address (calico#3940, #5613).
//   - A block seen empty on two consecutive passes loses its affinity and
//     returns to its pool (calico#7987).
//   - A pending affinity older than ClaimTimeout is deleted; a confirmed
//     affinity whose block is gone or belongs to another node is deleted; a
//     block whose affinity record is missing gets it back (cluster-wide).
//   - A handle record with no allocation is deleted (cluster-wide).
//   - A node seen deleted for Grace is released like ReleaseNode
//     (kube-controllers#564: blocks kept after node deletion; cluster-wide).
//
// When no Node exists at all, GC releases no allocation and no node: an
// empty node list is more likely a misconfiguration than a dead cluster.
func (m *IPAM) GC(ctx context.Context, opts GCOptions) (GCReport, error) {
	var rep GCReport
	p, err := m.gcPrepare(ctx, opts)
	if err != nil {
		return rep, err
	}
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	if m.gc == nil {
		m.gc = gcState{}
	}
	st := m.gc[opts.Node]
	if st == nil {
		st = &gcScope{leaks: map[leakKey]time.Time{}, empty: map[netip.Prefix]int{}, gone: map[string]time.Time{}}
		m.gc[opts.Node] = st
	}
	st.lastPass = p.now
	if err := m.gcLeaks(ctx, p, st, &rep); err != nil {
		return rep, err
	}
	touched := m.gcEmptyBlocks(ctx, p, st, &rep)
	m.gcAffinities(ctx, p, touched, &rep)
	if opts.Node == "" {
		m.gcRestoreAffinities(ctx, p, touched, &rep)
		m.gcHandles(ctx, p, &rep)
		if !p.noNodes {
			m.gcDeletedNodes(ctx, p, st, &rep)
		}
	}
	return rep, nil
}

// gcPass is what one pass read before it changes anything.
type gcPass struct {
	opts      GCOptions
	now       time.Time
	grace     time.Duration
	liveNodes map[string]bool
	noNodes   bool
	live      map[string]bool
	s         *snapshot
	allocs    []allocation
}

func (p *gcPass) inScope(node string) bool { return p.opts.Node == "" || node == p.opts.Node }

// gcPrepare reads the grace period, the live nodes and handles, and the
// IPAM state in scope: the whole tree, or one node's blocks.
func (m *IPAM) gcPrepare(ctx context.Context, opts GCOptions) (*gcPass, error) {
	if opts.Node != "" {
		if err := checkNode("node", opts.Node); err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
	}
	now := m.now
	if opts.Now != nil {
		now = opts.Now
	}
	if opts.LiveNodes == nil {
		opts.LiveNodes = m.LiveNodes
	}
	if opts.LiveHandles == nil {
		opts.LiveHandles = m.LiveHandles
	}
	if opts.RecheckHandles == nil {
		opts.RecheckHandles = opts.LiveHandles
	}
	p := &gcPass{opts: opts, grace: opts.Grace}
	if p.grace == 0 {
		cfg, err := m.readConfig(ctx)
		if err != nil {
			return nil, err
		}
		p.grace = cfg.grace
	}
	var err error
	if p.liveNodes, err = opts.LiveNodes(ctx); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	p.noNodes = len(p.liveNodes) == 0
	if p.live, err = opts.LiveHandles(ctx); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if opts.Node == "" {
		p.s, err = m.snapshot(ctx)
	} else {
		p.s, err = m.nodeSnapshot(ctx, opts.Node)
	}
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	p.allocs = p.s.allocations()
	p.now = now()
	return p, nil
}

// gcLeaks is phase 1: allocations whose handle is not live.
func (m *IPAM) gcLeaks(ctx context.Context, p *gcPass, st *gcScope, rep *GCReport) error {
	t := p.now
	leaks := map[leakKey]time.Time{}
	due := map[string][]allocRef{}
	dueLeaks := map[string][]Leak{}
	notYet := map[string]bool{}
	for _, a := range p.allocs {
		// In a node's pass every allocation of its blocks is in scope
		// (the snapshot holds only those); cluster-wide, all of them.
		if p.live[a.handle] || p.noNodes || (p.opts.Keep != nil && p.opts.Keep(a.attrs)) {
			continue
		}
		k := leakKey{a.addr, a.handle, a.seq}
		first, ok := st.leaks[k]
		if !ok {
			first = t
		}
		leaks[k] = first
		ts, _ := time.Parse(time.RFC3339, a.attrs[AttrTimestamp])
		if t.Sub(first) >= p.grace && (ts.IsZero() || t.Sub(ts) >= p.grace) {
			seq := a.seq
			due[a.handle] = append(due[a.handle], allocRef{addr: a.addr, block: a.b.cidr, handle: a.handle, seq: &seq})
			dueLeaks[a.handle] = append(dueLeaks[a.handle], Leak{Addr: a.addr, Handle: a.handle, Node: a.node, Seq: a.seq})
		} else {
			notYet[a.handle] = true
			rep.Waiting++
		}
	}
	st.leaks = leaks
	if p.noNodes && len(p.allocs) > 0 {
		rep.Warnings = append(rep.Warnings, "no Node resources exist: no allocation or node was released (register nodes, or pass LiveNodes)")
	}
	if len(due) == 0 {
		return nil
	}
	// Re-read liveness just before releasing: an endpoint written since
	// the first read saves its addresses.
	live2, err := p.opts.RecheckHandles(ctx)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for _, h := range sortedKeys(due) {
		if notYet[h] || live2[h] {
			if notYet[h] {
				rep.Waiting += len(due[h])
			}
			continue
		}
		freed, err := m.releaseRefs(ctx, due[h])
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("release leaked handle %q: %v", h, err))
			continue
		}
		for _, l := range dueLeaks[h] {
			if slices.Contains(freed, l.Addr) {
				rep.Released = append(rep.Released, l)
				delete(st.leaks, leakKey{l.Addr, l.Handle, l.Seq})
			}
		}
		m.log.Info("released leaked allocation", "handle", h, "addrs", freed)
	}
	return nil
}

// gcEmptyBlocks is phase 2: a block seen empty on two consecutive passes
// goes back to its pool. It returns the blocks it wrote (or tried to).
func (m *IPAM) gcEmptyBlocks(ctx context.Context, p *gcPass, st *gcScope, rep *GCReport) map[netip.Prefix]bool {
	s := p.s
	touched := map[netip.Prefix]bool{}
	empty := map[netip.Prefix]int{}
	for _, b := range s.blockList() {
		if !b.empty() || !p.inScope(b.affinity) {
			continue
		}
		n := st.empty[b.cidr] + 1
		empty[b.cidr] = n
		if n < 2 {
			continue
		}
		ops := []datastore.Op{{Type: datastore.OpDelete, Key: b.key(), Revision: b.rev}}
		if a, ok := s.affinity(b.affinity, b.cidr); ok && b.affinity != "" {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: a.key, Revision: a.rev})
		}
		touched[b.cidr] = true
		if _, err := m.store.Txn(ctx, ops); err != nil {
			if !errors.Is(err, datastore.ErrConflict) && !errors.Is(err, datastore.ErrNotFound) {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("release empty block %s: %v", b.cidr, err))
			}
			delete(empty, b.cidr) // it changed: start counting again
			continue
		}
		delete(empty, b.cidr)
		m.noteBlocks([]*block{b}, true)
		rep.BlocksReleased = append(rep.BlocksReleased, b.cidr)
		m.log.Info("released empty block", "block", b.cidr, "node", b.affinity)
	}
	st.empty = empty
	return touched
}

// gcAffinities is phase 3: abandoned and dangling affinities.
func (m *IPAM) gcAffinities(ctx context.Context, p *gcPass, touched map[netip.Prefix]bool, rep *GCReport) {
	s, t := p.s, p.now
	for _, a := range s.affs {
		if !p.inScope(a.node) || touched[a.cidr] {
			continue
		}
		b := s.blocks[a.cidr]
		owned := b != nil && b.affinity == a.node
		switch {
		case a.v.State == StatePending && !a.stalePending(t, m.cfg.ClaimTimeout):
			continue // a claim in progress
		case a.v.State == StatePending && owned:
			// Written by a two-phase claim that stopped after creating the
			// block (Calico's order): the block is the node's, confirm it.
			_, err := m.store.Txn(ctx, []datastore.Op{
				{Type: datastore.OpUpdate, Key: a.key, Value: mustJSON(affinityValue{State: StateConfirmed}), Revision: a.rev},
				{Type: datastore.OpCheck, Key: blockKey(a.cidr), Revision: b.rev},
			})
			if err == nil {
				rep.AffinitiesRestored = append(rep.AffinitiesRestored, a.node+" "+a.cidr.String())
			}
		case owned && a.v.State == StateConfirmed:
			continue
		default: // stale pending, dangling or pendingDeletion
			err := m.store.Delete(ctx, a.key, a.rev)
			if err == nil {
				rep.AffinitiesRemoved = append(rep.AffinitiesRemoved, a.node+" "+a.cidr.String())
				m.log.Info("removed affinity", "node", a.node, "block", a.cidr, "state", a.v.State)
			}
		}
	}
}

// gcRestoreAffinities is phase 3b (cluster-wide: a node's pass finds its
// blocks through its affinities, so it cannot see one that lost it): a
// block of a live node whose affinity record is missing gets it back.
func (m *IPAM) gcRestoreAffinities(ctx context.Context, p *gcPass, touched map[netip.Prefix]bool, rep *GCReport) {
	s := p.s
	for _, b := range s.blockList() {
		if b.affinity == "" || touched[b.cidr] || !p.liveNodes[b.affinity] {
			continue
		}
		if _, ok := s.affinity(b.affinity, b.cidr); ok {
			continue
		}
		_, err := m.store.Txn(ctx, []datastore.Op{
			{Type: datastore.OpCreate, Key: affinityKey(b.affinity, b.cidr), Value: mustJSON(affinityValue{State: StateConfirmed})},
			{Type: datastore.OpCheck, Key: b.key(), Revision: b.rev},
		})
		if err == nil {
			rep.AffinitiesRestored = append(rep.AffinitiesRestored, b.affinity+" "+b.cidr.String())
			m.log.Info("restored missing affinity", "node", b.affinity, "block", b.cidr)
		}
	}
}

// gcHandles is phase 4 (cluster-wide: a record alone does not say which
// node it belongs to): handle records without allocations. The delete
// checks the blocks it names are unchanged since the snapshot.
func (m *IPAM) gcHandles(ctx context.Context, p *gcPass, rep *GCReport) {
	s := p.s
	held := map[string]bool{}
	for _, a := range p.allocs {
		held[a.handle] = true
	}
	for _, id := range sortedKeys(s.handles) {
		if held[id] {
			continue
		}
		h := s.handles[id]
		ops := []datastore.Op{{Type: datastore.OpDelete, Key: handleKey(id), Revision: h.rev}}
		for _, cidr := range sortedBlockNames(h.v.Block) {
			var rev int64
			if b := s.blocks[cidr]; b != nil {
				rev = b.rev
			}
			ops = append(ops, datastore.Op{Type: datastore.OpCheck, Key: blockKey(cidr), Revision: rev})
		}
		if len(ops) > maxTxnOps {
			continue
		}
		if _, err := m.store.Txn(ctx, ops); err == nil {
			rep.HandlesRemoved = append(rep.HandlesRemoved, id)
		}
	}
}

// gcDeletedNodes is phase 5 (cluster-wide): a node seen deleted for Grace
// is released like ReleaseNode.
func (m *IPAM) gcDeletedNodes(ctx context.Context, p *gcPass, st *gcScope, rep *GCReport) {
	s, t := p.s, p.now
	seen := map[string]bool{}
	for _, b := range s.blockList() {
		seen[b.affinity] = true
	}
	for _, a := range s.affs {
		seen[a.node] = true
	}
	for _, a := range p.allocs {
		seen[a.node] = true
	}
	delete(seen, "")
	gone := map[string]time.Time{}
	for _, n := range sortedKeys(seen) {
		if p.liveNodes[n] {
			continue
		}
		first, ok := st.gone[n]
		if !ok {
			first = t
		}
		gone[n] = first
		if t.Sub(first) < p.grace {
			continue
		}
		if _, rev, err := m.readNode(ctx, n); err != nil || rev != 0 {
			continue // it came back (or we cannot tell)
		}
		freed, err := m.releaseNode(ctx, n)
		if err != nil {
			rep.Warnings = append(rep.Warnings, err.Error())
			continue
		}
		delete(gone, n)
		rep.NodesReleased = append(rep.NodesReleased, n)
		m.log.Info("released deleted node", "node", n, "addrs", len(freed))
	}
	st.gone = gone
}
