package ipam

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// CheckPoolChange says whether a pool may be created (old nil), updated, or
// deleted (new nil), given what IPAM holds. It runs the resource checks of
// internal/api (Validate, ValidateUpdate: cidr and blockSize are
// immutable; CheckPoolOverlap against the other pools) and adds IPAM's own:
//
//   - a new pool must not cover blocks left from a deleted pool that do not
//     fit it (another block size), since blocks must never overlap;
//   - a pool must not be deleted while addresses are allocated in it.
//
// Disabling a pool is always allowed: its addresses stay allocated, and no
// new ones are handed out.
func (m *IPAM) CheckPoolChange(ctx context.Context, old, new *api.IPPool) error {
	switch {
	case old == nil && new == nil:
		return errors.New("check pool change: no pool given")
	case new != nil:
		n := api.DeepCopy(new).(*api.IPPool)
		api.SetDefaults(n)
		if err := api.Validate(n); err != nil {
			return fmt.Errorf("IPPool %q: %w", n.Name, err)
		}
		if old != nil {
			if err := api.ValidateUpdate(old, n); err != nil {
				return fmt.Errorf("IPPool %q: %w", n.Name, err)
			}
		}
		rs, _, err := m.client.List(ctx, "IPPool", "")
		if err != nil {
			return fmt.Errorf("check IPPool %q: %w", n.Name, err)
		}
		existing := make([]*api.IPPool, 0, len(rs))
		for _, r := range rs {
			existing = append(existing, r.(*api.IPPool))
		}
		if err := api.CheckPoolOverlap(existing, n); err != nil {
			return err
		}
		if old != nil {
			return nil
		}
		p, err := parsePool(n)
		if err != nil {
			return err
		}
		s, err := m.snapshot(ctx)
		if err != nil {
			return fmt.Errorf("check IPPool %q: %w", n.Name, err)
		}
		for _, cidr := range s.sorted {
			if cidr.Overlaps(p.cidr) && !p.fits(cidr) {
				detail := "it is empty: wait for GC to remove it"
				if b := s.blocks[cidr]; b != nil && !b.empty() {
					detail = fmt.Sprintf("%d address(es) are still allocated in it", b.inUse())
				}
				return fmt.Errorf("IPPool %q: spec.cidr %s covers block %s, left from a pool with another block size (%s)", n.Name, p.cidr, cidr, detail)
			}
		}
		return nil
	default: // delete
		p, err := parsePool(old)
		if err != nil {
			return nil // a pool IPAM cannot read holds nothing IPAM gave out
		}
		s, err := m.snapshot(ctx)
		if err != nil {
			return fmt.Errorf("check deleting IPPool %q: %w", old.Name, err)
		}
		n, first := 0, ""
		for _, a := range s.allocations() {
			if p.cidr.Contains(a.addr) {
				if n == 0 {
					first = fmt.Sprintf("%s held by handle %q", a.addr, a.handle)
				}
				n++
			}
		}
		if n > 0 {
			return fmt.Errorf("IPPool %q (%s) still has %d allocated address(es), e.g. %s: disable the pool, let its workloads move, release what is left (tabby ipam release), then delete it", old.Name, p.cidr, n, first)
		}
		return nil
	}
}

// DeletePool deletes a pool safely: it first disables the pool (so no
// allocation can start in it, and any allocation planned against the old
// version fails its revision check), then checks nothing is allocated in
// it, then deletes it at the revision it disabled, and removes its empty
// blocks and their affinities. If addresses are still allocated it
// re-enables the pool (when it was enabled) and returns the reason.
func (m *IPAM) DeletePool(ctx context.Context, name string) error {
	r, err := m.client.Get(ctx, "IPPool", "", name)
	if err != nil {
		return fmt.Errorf("delete IPPool %q: %w", name, err)
	}
	orig := r.(*api.IPPool)
	wasDisabled := orig.Spec.Disabled
	cur := orig
	if !wasDisabled {
		d := api.DeepCopy(orig).(*api.IPPool)
		d.Spec.Disabled = true
		u, err := m.client.Update(ctx, d)
		if err != nil {
			return fmt.Errorf("delete IPPool %q: disable it first: %w", name, err)
		}
		cur = u.(*api.IPPool)
	}
	if err := m.CheckPoolChange(ctx, cur, nil); err != nil {
		if !wasDisabled {
			back := api.DeepCopy(cur).(*api.IPPool)
			back.Spec.Disabled = false
			if _, uerr := m.client.Update(ctx, back); uerr != nil {
				return fmt.Errorf("%w (and re-enabling it failed: %v)", err, uerr)
			}
		}
		return err
	}
	if _, err := m.client.Delete(ctx, "IPPool", "", name, cur.ResourceVersion); err != nil {
		return fmt.Errorf("delete IPPool %q: %w", name, err)
	}
	p, err := parsePool(cur)
	if err != nil {
		return nil
	}
	s, err := m.snapshot(ctx)
	if err != nil {
		return fmt.Errorf("delete IPPool %q: remove its blocks: %w", name, err)
	}
	for _, b := range s.blockList() {
		if !p.cidr.Overlaps(b.cidr) || !b.empty() {
			continue
		}
		ops := []datastore.Op{{Type: datastore.OpDelete, Key: b.key(), Revision: b.rev}}
		if a, ok := s.affinity(b.affinity, b.cidr); ok && b.affinity != "" {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: a.key, Revision: a.rev})
		}
		if _, err := m.store.Txn(ctx, ops); err != nil {
			m.log.Warn("could not remove a block of a deleted pool (GC will)", "block", b.cidr, "error", err)
			continue
		}
		m.noteBlocks([]*block{b}, true)
	}
	m.log.Info("deleted IP pool", "pool", name, "cidr", p.cidr, "revision", strconv.Quote(cur.ResourceVersion))
	return nil
}
