package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// errRetry means the datastore changed under a plan: re-read and plan again.
var errRetry = errors.New("the datastore changed while allocating")

// errLost means another host won the block being claimed.
var errLost = errors.New("block claimed by another host")

// errHandleExists means the handle was created before: return what it holds.
var errHandleExists = errors.New("handle exists")

// ExhaustedError says why a request could not be satisfied. It matches
// ErrExhausted with errors.Is.
type ExhaustedError struct {
	Family    int
	Node      string
	Pools     []string // name (cidr)
	Requested int
	Available int
	Reasons   []string
}

func (e *ExhaustedError) Error() string {
	var what string
	if len(e.Pools) == 1 {
		what = "pool " + e.Pools[0] + " exhausted"
	} else {
		what = "pools " + strings.Join(e.Pools, ", ") + " exhausted"
	}
	s := fmt.Sprintf("%s: node %q needs %d IPv%d address(es) and only %d can be allocated; nothing was allocated", what, e.Node, e.Requested, e.Family, e.Available)
	if len(e.Reasons) > 0 {
		s += " (" + strings.Join(e.Reasons, "; ") + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrExhausted) true.
func (e *ExhaustedError) Is(target error) bool { return target == ErrExhausted }

// plan is one attempt at a request: the blocks it changes (copies of what
// was read) and what it takes from each. Nothing is written until commit,
// which writes every block and the handle in one transaction, so a request
// gets all its addresses (both families, all static ones) or none.
type plan struct {
	req     *Request
	attrs   map[string]string
	v       *view
	touched map[netip.Prefix]*block
	order   []netip.Prefix
	items   []planItem
	pools   map[string]*pool
	cluster map[int]*clusterView
	claimed *[]*block // blocks claimed for this request, across attempts
	// reserved are the IPReservations, read once per request.
	reserved *reservations

	checkedHandle bool
	// dryRun plans without writing: a block it would claim is made in
	// memory only, and the handle is not looked at (see Available).
	dryRun bool
}

type planItem struct {
	cidr netip.Prefix
	ord  int
	pool *pool
}

// block returns the plan's working copy of b.
func (pl *plan) block(b *block) *block {
	if c, ok := pl.touched[b.cidr]; ok {
		return c
	}
	c := b.clone()
	pl.touched[b.cidr] = c
	pl.order = append(pl.order, b.cidr)
	return c
}

func (pl *plan) add(c *block, p *pool, ords []int) {
	for _, o := range ords {
		pl.items = append(pl.items, planItem{cidr: c.cidr, ord: o, pool: p})
	}
	if p != nil {
		pl.pools[p.name] = p
	}
}

// Allocate hands out the addresses a request asks for, all or none. For a
// handle that already exists it returns the addresses the handle holds
// (when they match the request), so a retried request is harmless.
//
// The common case — a free address in a block affine to the node, with the
// node's view cached from an earlier allocation — costs one datastore
// round trip: a transaction that updates the block, creates the handle and
// checks that the pool, IPAMConfig and Node are unchanged. (IPReservations
// come from Config.Reservations, the agent's watched cache; without it they
// are listed once per request.)
func (m *IPAM) Allocate(ctx context.Context, req Request) ([]Allocation, error) {
	if err := req.validate(); err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	unlock := m.lockNode(req.Node)
	defer unlock()
	a := req.Attrs
	if a.Node == "" {
		a.Node = req.Node
	}
	if a.Timestamp.IsZero() {
		a.Timestamp = m.now()
	}
	attrs := a.secondary()
	reserved, err := m.readReservations(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocate %q on node %q: %w", req.Handle, req.Node, err)
	}
	var claimed []*block
	var lastErr error
	fresh := false
	// Invariant (every attempt): an address is handed out only by a
	// transaction that updates its block at the revision the plan read, so
	// two hosts (or two processes) can never both take the same ordinal;
	// losing the race means reading again, at most MaxRetries times.
	for attempt := 0; attempt < datastore.MaxRetries; attempt++ {
		if attempt > 2 {
			if err := sleepJitter(ctx, attempt); err != nil {
				return nil, err
			}
		}
		v, err := m.viewFor(ctx, req.Node, fresh)
		if err != nil {
			return nil, fmt.Errorf("allocate %q on node %q: %w", req.Handle, req.Node, err)
		}
		fresh = true
		pl := &plan{req: &req, attrs: attrs, v: v, touched: map[netip.Prefix]*block{}, pools: map[string]*pool{}, cluster: map[int]*clusterView{}, claimed: &claimed, reserved: reserved}
		out, err := m.tryAllocate(ctx, pl)
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, errRetry):
			lastErr = err
			continue
		case errors.Is(err, datastore.ErrUnavailable):
			// Reading a fresh view would wait on the same unreachable
			// datastore: fail now, so the caller can answer "try again".
		case !v.fresh:
			// The cached view may have been stale (a new pool, a new
			// block): decide only on fresh data.
			lastErr = err
			continue
		}
		m.unclaim(ctx, claimed)
		return nil, fmt.Errorf("allocate %q on node %q: %w", req.Handle, req.Node, err)
	}
	m.unclaim(ctx, claimed)
	return nil, fmt.Errorf("allocate %q on node %q: gave up after %d attempts: %w", req.Handle, req.Node, datastore.MaxRetries, lastErr)
}

func sleepJitter(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (m *IPAM) tryAllocate(ctx context.Context, pl *plan) ([]Allocation, error) {
	req := pl.req
	var out []Allocation
	err := m.planRequest(ctx, pl)
	if err == nil {
		out, err = m.commit(ctx, pl)
	}
	if errors.Is(err, errHandleExists) {
		return m.existing(ctx, pl)
	}
	if err != nil && !errors.Is(err, errRetry) && !errors.Is(err, datastore.ErrUnavailable) && !pl.checkedHandle {
		// A retried request whose handle exists must get its addresses
		// back, not an error about the pool being full. (Not when the
		// datastore does not answer: asking again would wait again.)
		if ok, herr := m.handleExists(ctx, req.Handle); herr != nil {
			return nil, herr
		} else if ok {
			return m.existing(ctx, pl)
		}
	}
	return out, err
}

func (m *IPAM) planRequest(ctx context.Context, pl *plan) error {
	req := pl.req
	if len(req.Static) > 0 {
		if err := m.checkHandleFirst(ctx, pl); err != nil {
			return err
		}
		for i, a := range req.Static {
			if err := m.planStatic(ctx, pl, i, a); err != nil {
				return err
			}
		}
	}
	v4, v6 := req.counts()
	type family struct {
		fam, n int
		pools  []*pool
	}
	var fams []family
	// Resolve the pools of both families before taking anything, so a
	// request that cannot be served claims no block.
	for _, f := range []struct {
		fam, n int
		names  []string
	}{{4, v4, req.Pools4}, {6, v6, req.Pools6}} {
		if f.n == 0 {
			continue
		}
		pools, err := candidatePools(pl.v.pools, f.names, f.fam, req.use(), req.Node, pl.v.labels)
		if err != nil {
			return err
		}
		fams = append(fams, family{f.fam, f.n, pools})
	}
	for _, f := range fams {
		if err := m.planAuto(ctx, pl, f.pools, f.fam, f.n); err != nil {
			return err
		}
	}
	return nil
}

// checkHandleFirst looks for an existing handle once per attempt, before
// the slow paths (which could fail or claim blocks for nothing).
func (m *IPAM) checkHandleFirst(ctx context.Context, pl *plan) error {
	if pl.checkedHandle || pl.dryRun {
		return nil
	}
	pl.checkedHandle = true
	ok, err := m.handleExists(ctx, pl.req.Handle)
	if err != nil {
		return err
	}
	if ok {
		return errHandleExists
	}
	return nil
}

func (m *IPAM) handleExists(ctx context.Context, id string) (bool, error) {
	_, err := m.store.Get(ctx, handleKey(id))
	if errors.Is(err, datastore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read handle %q: %w", id, err)
	}
	return true, nil
}

func (m *IPAM) cluster(ctx context.Context, pl *plan, fam int) (*clusterView, error) {
	if cl := pl.cluster[fam]; cl != nil {
		return cl, nil
	}
	cl, err := m.loadCluster(ctx, fam)
	if err != nil {
		return nil, err
	}
	pl.cluster[fam] = cl
	return cl, nil
}

// planAuto takes n addresses of family fam from pools: the node's own
// blocks first, then newly claimed blocks, then (unless strictAffinity)
// free addresses of other hosts' blocks.
func (m *IPAM) planAuto(ctx context.Context, pl *plan, pools []*pool, fam, n int) error {
	node := pl.req.Node
	got := 0
	take := func(b *block, p *pool) {
		c := pl.block(b)
		ords := c.takeUnreserved(n-got, pl.req.Handle, pl.attrs, pl.reserved)
		pl.add(c, p, ords)
		got += len(ords)
	}
	for _, b := range pl.v.ownSorted(fam) {
		if got == n {
			return nil
		}
		if p := poolFor(pools, b.cidr); p != nil {
			take(b, p)
		}
	}
	if got == n {
		return nil
	}

	// Slow path: the node's blocks are full.
	if err := m.checkHandleFirst(ctx, pl); err != nil {
		return err
	}
	cl, err := m.cluster(ctx, pl, fam)
	if err != nil {
		return err
	}
	// Blocks affine to the node that the view did not know (claimed by
	// another process for this node).
	for _, cidr := range cl.affineTo(node) {
		if got == n {
			break
		}
		if pl.v.own[cidr] != nil {
			continue
		}
		b := cl.block(cidr)
		if b == nil || b.affinity != node || b.deleted {
			continue
		}
		if p := poolFor(pools, cidr); p != nil {
			take(b, p)
		}
	}
	var reasons []string
	for got < n {
		b, why, err := m.claimNext(ctx, pl, cl, pools)
		if err != nil {
			return err
		}
		if b == nil {
			reasons = append(reasons, why...)
			break
		}
		*pl.claimed = append(*pl.claimed, b)
		take(b, poolFor(pools, b.cidr))
	}
	if got < n {
		var borrowable []*block
		free := 0
		for _, cidr := range cl.sorted {
			if poolFor(pools, cidr) == nil {
				continue
			}
			b := cl.block(cidr)
			if b == nil || b.affinity == node || b.deleted || poolFor(pools, cidr) == nil {
				continue
			}
			if c := pl.touched[cidr]; c != nil {
				b = c
			}
			if f := b.numFree() - b.reservedFree(pl.reserved); f > 0 {
				borrowable = append(borrowable, b)
				free += f
			}
		}
		switch {
		case len(borrowable) == 0:
		case pl.v.config.strict:
			reasons = append(reasons, fmt.Sprintf("strictAffinity is on, so the %d free address(es) in blocks of other hosts cannot be borrowed", free))
		default:
			slices.SortFunc(borrowable, func(a, b *block) int {
				x, y := hashOrder(node, a.cidr), hashOrder(node, b.cidr)
				switch {
				case x < y:
					return -1
				case x > y:
					return 1
				}
				return 0
			})
			for _, b := range borrowable {
				if got == n {
					break
				}
				take(b, poolFor(pools, b.cidr))
			}
		}
	}
	if got < n {
		e := &ExhaustedError{Family: fam, Node: node, Requested: n, Available: got, Reasons: reasons}
		for _, p := range pools {
			e.Pools = append(e.Pools, p.String())
		}
		return e
	}
	return nil
}

// claimNext claims one new block for the node from pools, or says why it
// cannot.
func (m *IPAM) claimNext(ctx context.Context, pl *plan, cl *clusterView, pools []*pool) (*block, []string, error) {
	node := pl.req.Node
	cfg := pl.v.config
	if !cfg.autoAllocate {
		return nil, []string{"autoAllocateBlocks is false, so no new block can be claimed"}, nil
	}
	if cfg.maxBlocks > 0 {
		if c := cl.affineCount(node); c >= cfg.maxBlocks {
			return nil, []string{fmt.Sprintf("node %q has %d IPv%d block(s), the maxBlocksPerHost limit", node, c, cl.fam)}, nil
		}
	}
	now := m.now()
	var pending []string
	for _, p := range pools {
		it := newCandidateBlocks(p, node)
		for cidr, ok := it.next(); ok; cidr, ok = it.next() {
			if cl.taken(cidr) || pl.reserved.covers(cidr) {
				continue
			}
			if other, since := cl.pendingOther(cidr, node, now, m.cfg.ClaimTimeout); other != "" {
				if len(pending) < 3 {
					pending = append(pending, fmt.Sprintf("block %s is being claimed by node %q since %s (abandoned claims expire after %s)", cidr, other, since.UTC().Format(time.RFC3339), m.cfg.ClaimTimeout))
				}
				continue
			}
			b, err := m.claimBlock(ctx, pl, cl, p, cidr)
			if errors.Is(err, errLost) {
				// Another host created it first: it may still lend addresses.
				cl.markTaken(cidr)
				if won, err := m.getBlock(ctx, cidr); err == nil {
					cl.decoded[cidr] = won
				}
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			cl.add(b)
			return b, nil, nil
		}
	}
	return nil, append(pending, "no unclaimed block is left"), nil
}

// claimBlock claims cidr of pool p for the node, in two phases:
//
//  1. create the node's affinity for the block in state "pending" (with the
//     time), announcing the claim;
//  2. in ONE transaction: create the block (affine to the node; fails if any
//     host created it first), confirm the affinity at the revision phase 1
//     wrote, check the pool is unchanged, and delete other hosts' abandoned
//     pending affinities for the block.
//
// Invariant: a block exists only together with the confirmed affinity of
// the node it names, and a block is created only while its pool exists
// unchanged. A host dying after phase 1 leaves only a pending affinity,
// which blocks no one after ClaimTimeout and which GC removes; a host that
// loses the race deletes its pending affinity (libcalico-go#778: hosts
// sharing an affinity).
func (m *IPAM) claimBlock(ctx context.Context, pl *plan, cl *clusterView, p *pool, cidr netip.Prefix) (*block, error) {
	node := pl.req.Node
	if pl.dryRun {
		return newBlock(cidr, node, pl.v.config.strict), nil
	}
	akey := affinityKey(node, cidr)
	now := m.now()
	pending := mustJSON(affinityValue{State: StatePending, PendingSince: &now})
	arev, err := m.store.Create(ctx, akey, pending)
	if errors.Is(err, datastore.ErrExists) {
		// Our own leftover (an earlier claim of ours that died): take it over.
		kv, gerr := m.store.Get(ctx, akey)
		if gerr != nil {
			return nil, fmt.Errorf("claim block %s: %w", cidr, errLost)
		}
		arev, err = m.store.Update(ctx, akey, pending, kv.Revision)
		if errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrNotFound) {
			return nil, fmt.Errorf("claim block %s: %w", cidr, errLost)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("claim block %s: mark pending: %w", cidr, err)
	}
	if m.afterPending != nil {
		if err := m.afterPending(node, cidr); err != nil {
			return nil, fmt.Errorf("claim block %s: %w", cidr, err)
		}
	}
	b := newBlock(cidr, node, pl.v.config.strict)
	ops := []datastore.Op{
		{Type: datastore.OpCreate, Key: blockKey(cidr), Value: b.encode()},
		{Type: datastore.OpUpdate, Key: akey, Value: mustJSON(affinityValue{State: StateConfirmed}), Revision: arev},
		{Type: datastore.OpCheck, Key: p.key(), Revision: p.rev},
	}
	for _, a := range cl.affs[cidr] {
		if a.node != node && (a.stalePending(now, m.cfg.ClaimTimeout) || a.v.State != StatePending) {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: a.key, Revision: a.rev})
		}
	}
	rev, err := m.store.Txn(ctx, ops)
	if err == nil {
		b.rev = rev
		m.log.Info("claimed block", "block", cidr, "node", node, "pool", p.name)
		return b, nil
	}
	if derr := m.store.Delete(ctx, akey, arev); derr != nil && !errors.Is(derr, datastore.ErrNotFound) && !errors.Is(derr, datastore.ErrConflict) {
		m.log.Warn("could not remove pending affinity after a lost claim (GC will)", "block", cidr, "node", node, "error", derr)
	}
	switch {
	case errors.Is(err, datastore.ErrExists):
		return nil, fmt.Errorf("claim block %s: %w", cidr, errLost)
	case errors.Is(err, datastore.ErrConflict), errors.Is(err, datastore.ErrNotFound):
		return nil, fmt.Errorf("claim block %s: %w", cidr, errRetry)
	}
	return nil, fmt.Errorf("claim block %s: %w", cidr, err)
}

// unclaim returns blocks claimed for a request that then failed, if they
// are still empty and unchanged, so a failed request leaves nothing behind.
func (m *IPAM) unclaim(ctx context.Context, bs []*block) {
	for _, b := range bs {
		_, err := m.store.Txn(ctx, []datastore.Op{
			{Type: datastore.OpDelete, Key: b.key(), Revision: b.rev},
			{Type: datastore.OpDelete, Key: affinityKey(b.affinity, b.cidr), Revision: b.rev},
		})
		if err != nil {
			m.log.Debug("kept block claimed for a failed request", "block", b.cidr, "error", err)
			continue
		}
		m.noteBlocks([]*block{b}, true)
	}
}

// planStatic takes the specific address a (Request.Static[i]).
func (m *IPAM) planStatic(ctx context.Context, pl *plan, i int, a netip.Addr) error {
	req := pl.req
	field := fmt.Sprintf("static[%d]", i)
	p := poolContaining(pl.v.pools, a)
	if p == nil {
		var cidrs []string
		for _, p := range pl.v.pools {
			cidrs = append(cidrs, p.cidr.String())
		}
		if len(cidrs) == 0 {
			return fmt.Errorf("%s: %s is not in any IP pool: there are no IP pools", field, a)
		}
		return fmt.Errorf("%s: %s is not in any IP pool (pools: %s)", field, a, strings.Join(cidrs, ", "))
	}
	if p.res.Spec.Disabled {
		return fmt.Errorf("%s: %s is in IP pool %s, which is disabled", field, a, p)
	}
	if owner, cidr, ok := pl.reserved.reservedBy(a); ok {
		return fmt.Errorf("%s: %s is reserved by IPReservation %q (%s): %w", field, a, owner, cidr, ErrReserved)
	}
	if !p.res.Spec.AllowsUse(req.use()) {
		return fmt.Errorf("%s: %s is in IP pool %s, whose allowedUses %v do not include %s", field, a, p, p.res.Spec.AllowedUses, req.use())
	}
	names := req.Pools4
	if !a.Is4() {
		names = req.Pools6
	}
	if len(names) > 0 {
		ok := false
		for _, n := range names {
			ok = ok || findPool(pl.v.pools, n) == p
		}
		if !ok {
			return fmt.Errorf("%s: %s is in IP pool %s, which is not among the requested pools %v", field, a, p, names)
		}
	}
	cidr := p.blockFor(a)
	var b *block
	switch {
	case pl.touched[cidr] != nil:
		b = pl.touched[cidr]
	case pl.v.own[cidr] != nil:
		b = pl.v.own[cidr]
	default:
		var err error
		b, err = m.getBlock(ctx, cidr)
		if errors.Is(err, datastore.ErrNotFound) {
			b, err = m.claimStatic(ctx, pl, p, cidr)
		}
		if err != nil {
			return err
		}
	}
	if b.deleted {
		return fmt.Errorf("%s: block %s of %s is marked deleted", field, cidr, a)
	}
	c := pl.block(b)
	o, _ := c.ordinal(a)
	if c.allocated(o) {
		h := c.handleOf(o)
		return fmt.Errorf("%s: %s is already held by handle %q on node %q: %w", field, a, h, c.attrsOf(o)[AttrNode], ErrInUse)
	}
	c.takeOrdinal(o, req.Handle, pl.attrs)
	pl.add(c, p, []int{o})
	return nil
}

// claimStatic claims the (absent) block holding a static address for the node.
func (m *IPAM) claimStatic(ctx context.Context, pl *plan, p *pool, cidr netip.Prefix) (*block, error) {
	cl, err := m.cluster(ctx, pl, p.family())
	if err != nil {
		return nil, err
	}
	if cl.taken(cidr) {
		return nil, fmt.Errorf("block %s overlaps a block left from another pool; see tabby ipam check: %w", cidr, errRetry)
	}
	b, err := m.claimBlock(ctx, pl, cl, p, cidr)
	if errors.Is(err, errLost) {
		return m.getBlock(ctx, cidr) // someone else created it: use theirs
	}
	if err != nil {
		return nil, err
	}
	cl.add(b)
	*pl.claimed = append(*pl.claimed, b)
	return b, nil
}

// commit writes the plan in one transaction: every changed block at the
// revision it was read at, the new handle (which must not exist), and
// checks that the pools used, IPAMConfig and the Node did not change since
// the plan read them.
func (m *IPAM) commit(ctx context.Context, pl *plan) ([]Allocation, error) {
	req := pl.req
	counts := map[string]int{}
	for _, it := range pl.items {
		counts[it.cidr.String()]++
	}
	ops := make([]datastore.Op, 0, len(pl.order)+len(pl.pools)+3)
	var written []*block
	for _, cidr := range pl.order {
		c := pl.touched[cidr]
		if counts[cidr.String()] == 0 {
			continue // read but not changed
		}
		ops = append(ops, datastore.Op{Type: datastore.OpUpdate, Key: c.key(), Value: c.encode(), Revision: c.rev})
		written = append(written, c)
	}
	ops = append(ops, datastore.Op{Type: datastore.OpCreate, Key: handleKey(req.Handle), Value: mustJSON(handleValue{Block: counts})})
	for _, p := range pl.pools {
		ops = append(ops, datastore.Op{Type: datastore.OpCheck, Key: p.key(), Revision: p.rev})
	}
	ops = append(ops,
		datastore.Op{Type: datastore.OpCheck, Key: datastore.ResourceKey(ipamConfigKind, "", "default"), Revision: pl.v.config.rev},
		datastore.Op{Type: datastore.OpCheck, Key: datastore.ResourceKey(nodeKind, "", req.Node), Revision: pl.v.nodeRev},
	)
	if len(ops) > maxTxnOps {
		return nil, fmt.Errorf("the request spans %d blocks, too many for one transaction: ask for fewer addresses", len(written))
	}
	rev, err := m.store.Txn(ctx, ops)
	switch {
	case err == nil:
	case errors.Is(err, datastore.ErrExists):
		return nil, errHandleExists
	case errors.Is(err, datastore.ErrConflict), errors.Is(err, datastore.ErrNotFound):
		return nil, fmt.Errorf("%w: %v", errRetry, err)
	default:
		return nil, fmt.Errorf("write allocation: %w", err)
	}
	for _, c := range written {
		c.rev = rev
	}
	m.noteBlocks(written, false)
	out := make([]Allocation, 0, len(pl.items))
	for _, it := range pl.items {
		c := pl.touched[it.cidr]
		out = append(out, Allocation{Addr: c.addr(it.ord), Block: it.cidr, Pool: poolRes(it.pool), Seq: c.seqFor[it.ord]})
	}
	m.log.Debug("allocated", "handle", req.Handle, "node", req.Node, "addrs", addrsOf(out))
	return out, nil
}

func poolRes(p *pool) *api.IPPool {
	if p == nil {
		return nil
	}
	return p.res
}

func addrsOf(as []Allocation) []netip.Addr {
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = a.Addr
	}
	return out
}

// existing returns what an existing handle holds, if it matches the request.
func (m *IPAM) existing(ctx context.Context, pl *plan) ([]Allocation, error) {
	req := pl.req
	out, found, err := m.handleAllocations(ctx, req.Handle, pl.v.pools)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("handle %q vanished while allocating: %w", req.Handle, errRetry)
	}
	if len(out) == 0 {
		// A record that holds nothing (written by another tool, or damaged
		// by hand): remove it, if unchanged, and allocate afresh. Nothing
		// adds addresses to an existing handle, so this cannot race one.
		if kv, err := m.store.Get(ctx, handleKey(req.Handle)); err == nil {
			if err := m.store.Delete(ctx, kv.Key, kv.Revision); err != nil {
				m.log.Debug("could not remove an empty handle record", "handle", req.Handle, "error", err)
			}
		}
		return nil, fmt.Errorf("handle %q held no address: %w", req.Handle, errRetry)
	}
	v4, v6 := req.counts()
	count := map[int]int{4: v4, 6: v6}
	for _, fam := range []int{4, 6} {
		var held, static []netip.Addr
		for _, a := range out {
			if familyOf(a.Addr) == fam {
				held = append(held, a.Addr)
			}
		}
		for _, a := range req.Static {
			if familyOf(a) == fam {
				static = append(static, a)
			}
		}
		slices.SortFunc(static, netip.Addr.Compare)
		switch {
		case len(static) > 0 && !slices.Equal(held, static):
			return nil, fmt.Errorf("handle %q already holds IPv%d %v, not the requested %v; release the handle first: %w", req.Handle, fam, held, static, ErrHandleMismatch)
		case len(static) == 0 && len(held) != count[fam]:
			return nil, fmt.Errorf("handle %q already holds %d IPv%d address(es) %v, but the request asks for %d; release the handle first: %w", req.Handle, len(held), fam, held, count[fam], ErrHandleMismatch)
		}
	}
	return out, nil
}

// handleAllocations reads what a handle holds (found=false when the handle
// does not exist).
func (m *IPAM) handleAllocations(ctx context.Context, id string, pools []*pool) ([]Allocation, bool, error) {
	kv, err := m.store.Get(ctx, handleKey(id))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read handle %q: %w", id, err)
	}
	hv, err := decodeHandle(kv.Value)
	if err != nil {
		return nil, true, fmt.Errorf("handle %q: %w", id, err)
	}
	var out []Allocation
	for _, cidr := range sortedBlockNames(hv.Block) {
		b, err := m.getBlock(ctx, cidr)
		if errors.Is(err, datastore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, true, err
		}
		for _, o := range b.ordinalsOf(id) {
			out = append(out, Allocation{Addr: b.addr(o), Block: cidr, Pool: poolRes(poolFor(pools, cidr)), Seq: b.seqFor[o]})
		}
	}
	slices.SortFunc(out, func(a, b Allocation) int { return a.Addr.Compare(b.Addr) })
	return out, true, nil
}

// sortedBlockNames parses a handle's block map keys, in address order.
func sortedBlockNames(m map[string]int) []netip.Prefix {
	var out []netip.Prefix
	for k := range m {
		if p, err := netip.ParsePrefix(k); err == nil && p.Masked() == p {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefixes)
	return out
}
