package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/datastore"
)

// ReleaseHandle frees every address of a handle and deletes the handle, in
// one transaction. Releasing a handle that does not exist is not an error
// (CNI DEL is retried); it returns the addresses freed.
func (m *IPAM) ReleaseHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	if err := checkHandle(handle); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	// Invariant: the blocks and the handle change together, at the
	// revisions read, so a release never frees an address that was
	// allocated again after it was read.
	var lastErr error
	for range datastore.MaxRetries {
		kv, err := m.store.Get(ctx, handleKey(handle))
		if errors.Is(err, datastore.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("release handle %q: %w", handle, err)
		}
		hv, err := decodeHandle(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("release handle %q: %w (tabby ipam check reports it; GC frees its addresses)", handle, err)
		}
		var ops []datastore.Op
		var freed []netip.Addr
		var written []*block
		for _, cidr := range sortedBlockNames(hv.Block) {
			b, err := m.getBlock(ctx, cidr)
			if errors.Is(err, datastore.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("release handle %q: %w", handle, err)
			}
			ords := b.ordinalsOf(handle)
			if len(ords) == 0 {
				continue
			}
			c := b.clone()
			for _, o := range ords {
				c.release(o)
				freed = append(freed, c.addr(o))
			}
			ops = append(ops, datastore.Op{Type: datastore.OpUpdate, Key: c.key(), Value: c.encode(), Revision: c.rev})
			written = append(written, c)
		}
		ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision})
		rev, err := m.store.Txn(ctx, ops)
		if errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrNotFound) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("release handle %q: %w", handle, err)
		}
		for _, c := range written {
			c.rev = rev
		}
		m.noteBlocks(written, false)
		m.log.Debug("released handle", "handle", handle, "addrs", freed)
		return freed, nil
	}
	return nil, fmt.Errorf("release handle %q: gave up after %d attempts: %w", handle, datastore.MaxRetries, lastErr)
}

// ReleaseAddr frees one address, whoever holds it (the CLI's release; the
// agent releases by handle). ErrNotAllocated when it is free.
func (m *IPAM) ReleaseAddr(ctx context.Context, addr netip.Addr) error {
	_, err := m.releaseOne(ctx, addr, "", nil)
	return err
}

// ReleaseAllocation frees addr only if handle still holds it with sequence
// number seq (as returned by Allocate or seen by a check): a release based
// on an old observation can never free the address of a later allocation.
// It reports whether the address was freed.
func (m *IPAM) ReleaseAllocation(ctx context.Context, addr netip.Addr, handle string, seq uint64) (bool, error) {
	n, err := m.releaseOne(ctx, addr, handle, &seq)
	if errors.Is(err, ErrNotAllocated) {
		return false, nil
	}
	return n > 0, err
}

func (m *IPAM) releaseOne(ctx context.Context, addr netip.Addr, handle string, seq *uint64) (int, error) {
	if !addr.IsValid() || addr.Is4In6() || addr.Zone() != "" {
		return 0, fmt.Errorf("release: %q is not an IPv4 or IPv6 address", addr)
	}
	cidr, err := m.findBlock(ctx, addr)
	if err != nil {
		return 0, err
	}
	freed, err := m.releaseRefs(ctx, []allocRef{{addr: addr, block: cidr, handle: handle, seq: seq}})
	if err != nil {
		return 0, err
	}
	if len(freed) == 0 {
		if handle != "" {
			return 0, nil
		}
		return 0, fmt.Errorf("release %s: %w", addr, ErrNotAllocated)
	}
	return len(freed), nil
}

// findBlock finds the stored block holding addr.
func (m *IPAM) findBlock(ctx context.Context, addr netip.Addr) (netip.Prefix, error) {
	pools, err := m.readPools(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p := poolContaining(pools, addr); p != nil {
		cidr := p.blockFor(addr)
		if _, err := m.store.Get(ctx, blockKey(cidr)); err == nil {
			return cidr, nil
		} else if !errors.Is(err, datastore.ErrNotFound) {
			return netip.Prefix{}, fmt.Errorf("read block %s: %w", cidr, err)
		}
	}
	// Not where its pool says (or in no pool): look at every block.
	kvs, _, err := m.store.List(ctx, blockKeyPrefix(familyOf(addr)))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list blocks: %w", err)
	}
	for _, kv := range kvs {
		if cidr, err := parseBlockKey(kv.Key); err == nil && cidr.Contains(addr) {
			return cidr, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("release %s: no block holds it: %w", addr, ErrNotAllocated)
}

// allocRef names one allocation to release; handle "" and seq nil match
// whatever holds the address.
type allocRef struct {
	addr   netip.Addr
	block  netip.Prefix
	handle string
	seq    *uint64
}

func (r allocRef) matches(b *block, o int) bool {
	if !b.allocated(o) {
		return false
	}
	if r.handle != "" && b.handleOf(o) != r.handle {
		return false
	}
	return r.seq == nil || b.seqFor[o] == *r.seq
}

// releaseRefs frees the allocations refs name that still match, in one
// transaction per attempt: the blocks at the revisions read, and the
// handle records of their holders (decremented, or deleted when empty; a
// holder without a record is checked still absent). refs should belong
// to few handles: GC calls it once per handle.
func (m *IPAM) releaseRefs(ctx context.Context, refs []allocRef) ([]netip.Addr, error) {
	var lastErr error
	for range datastore.MaxRetries {
		blocks := map[netip.Prefix]*block{}
		var order []netip.Prefix
		for _, r := range refs {
			if _, ok := blocks[r.block]; ok {
				continue
			}
			b, err := m.getBlock(ctx, r.block)
			if errors.Is(err, datastore.ErrNotFound) {
				blocks[r.block] = nil
				continue
			}
			if err != nil {
				return nil, err
			}
			blocks[r.block] = b.clone()
			order = append(order, r.block)
		}
		var freed []netip.Addr
		perHandle := map[string]map[string]int{} // handle → block → count freed
		changed := map[netip.Prefix]bool{}
		for _, r := range refs {
			b := blocks[r.block]
			if b == nil {
				continue
			}
			o, ok := b.ordinal(r.addr)
			if !ok || !r.matches(b, o) {
				continue
			}
			h := b.handleOf(o)
			b.release(o)
			freed = append(freed, r.addr)
			changed[r.block] = true
			if perHandle[h] == nil {
				perHandle[h] = map[string]int{}
			}
			perHandle[h][r.block.String()]++
		}
		if len(freed) == 0 {
			return nil, nil
		}
		var ops []datastore.Op
		var written []*block
		for _, cidr := range order {
			if b := blocks[cidr]; changed[cidr] {
				ops = append(ops, datastore.Op{Type: datastore.OpUpdate, Key: b.key(), Value: b.encode(), Revision: b.rev})
				written = append(written, b)
			}
		}
		for _, h := range sortedKeys(perHandle) {
			if h == "" {
				continue // an allocation without a handle (written by an old Calico)
			}
			op, err := m.handleDecrement(ctx, h, perHandle[h])
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		}
		rev, err := m.store.Txn(ctx, ops)
		if errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrNotFound) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("release %v: %w", freed, err)
		}
		for _, b := range written {
			b.rev = rev
		}
		m.noteBlocks(written, false)
		m.log.Debug("released addresses", "addrs", freed)
		return freed, nil
	}
	return nil, fmt.Errorf("release: gave up after %d attempts: %w", datastore.MaxRetries, lastErr)
}

// handleDecrement is the op that takes freed counts off a handle record:
// an update, a delete when nothing is left, or a check that the record is
// still absent.
func (m *IPAM) handleDecrement(ctx context.Context, h string, freed map[string]int) (datastore.Op, error) {
	key := handleKey(h)
	kv, err := m.store.Get(ctx, key)
	if errors.Is(err, datastore.ErrNotFound) {
		return datastore.Op{Type: datastore.OpCheck, Key: key}, nil
	}
	if err != nil {
		return datastore.Op{}, fmt.Errorf("read handle %q: %w", h, err)
	}
	hv, err := decodeHandle(kv.Value)
	if err != nil {
		// A damaged record: the allocations go, so does the record.
		return datastore.Op{Type: datastore.OpDelete, Key: key, Revision: kv.Revision}, nil
	}
	for cidr, n := range freed {
		if hv.Block[cidr] -= n; hv.Block[cidr] <= 0 {
			delete(hv.Block, cidr)
		}
	}
	if len(hv.Block) == 0 {
		return datastore.Op{Type: datastore.OpDelete, Key: key, Revision: kv.Revision}, nil
	}
	return datastore.Op{Type: datastore.OpUpdate, Key: key, Value: mustJSON(hv), Revision: kv.Revision}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
