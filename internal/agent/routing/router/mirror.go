package router

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// mirror keeps the IPAM state routing needs (confirmed affinities, block
// owners, borrowed addresses) in step with the datastore: one
// datastore.Reflector per prefix (list, watch from the listing's revision,
// relist when the watch breaks). While the datastore is unreachable the
// last state stays; a key that cannot be decoded is left out (logged once;
// `tabby ipam check` names it).
type mirror struct {
	store datastore.Store
	log   *slog.Logger
	kick  func()

	mu     sync.Mutex
	affs   map[string]affinity // key → affinity
	blocks map[netip.Prefix]ipam.BlockOwners
	listed map[string]bool // prefix → listed once
}

type affinity struct {
	node      string
	cidr      netip.Prefix
	confirmed bool
}

func newMirror(store datastore.Store, log *slog.Logger, kick func()) *mirror {
	return &mirror{store: store, log: log, kick: kick,
		affs: map[string]affinity{}, blocks: map[netip.Prefix]ipam.BlockOwners{}, listed: map[string]bool{}}
}

// Run keeps the mirror in sync until ctx ends.
func (m *mirror) Run(ctx context.Context) error {
	affs := datastore.NewReflector(m.store, ipam.AffinityPrefix, decodeAffinity, datastore.Handler[affinity]{
		Replace: func(items []datastore.Item[affinity], _ int64) {
			m.replace(ipam.AffinityPrefix, func() {
				m.affs = make(map[string]affinity, len(items))
				for _, it := range items {
					m.affs[it.Key] = it.Value
				}
			})
		},
		Put: func(it datastore.Item[affinity]) {
			m.apply(func() bool {
				old, had := m.affs[it.Key]
				m.affs[it.Key] = it.Value
				return !had || old != it.Value
			})
		},
		Delete: func(key string, _ affinity, _ int64) {
			m.apply(func() bool { delete(m.affs, key); return true })
		},
	}, datastore.ReflectorOptions{Name: "IPAM affinities", Log: m.log})
	blocks := datastore.NewReflector(m.store, ipam.BlockPrefix, decodeBlock, datastore.Handler[ipam.BlockOwners]{
		Replace: func(items []datastore.Item[ipam.BlockOwners], _ int64) {
			m.replace(ipam.BlockPrefix, func() {
				m.blocks = make(map[netip.Prefix]ipam.BlockOwners, len(items))
				for _, it := range items {
					m.blocks[it.Value.CIDR] = it.Value
				}
			})
		},
		Put: func(it datastore.Item[ipam.BlockOwners]) {
			b := it.Value
			m.apply(func() bool {
				old, had := m.blocks[b.CIDR]
				m.blocks[b.CIDR] = b
				return !had || old.Node != b.Node || !sameBorrowed(old.Borrowed, b.Borrowed)
			})
		},
		Delete: func(_ string, old ipam.BlockOwners, _ int64) {
			m.apply(func() bool { delete(m.blocks, old.CIDR); return true })
		},
	}, datastore.ReflectorOptions{Name: "IPAM blocks", Log: m.log})
	var wg sync.WaitGroup
	wg.Go(func() { _ = affs.Run(ctx) })
	wg.Go(func() { _ = blocks.Run(ctx) })
	wg.Wait()
	return nil
}

func decodeAffinity(kv *datastore.KV) (affinity, error) {
	node, cidr, ok, err := ipam.ParseAffinity(kv.Key, kv.Value)
	return affinity{node: node, cidr: cidr, confirmed: ok}, err
}

func decodeBlock(kv *datastore.KV) (ipam.BlockOwners, error) {
	return ipam.ParseBlock(kv.Key, kv.Value)
}

// replace swaps in a fresh listing of one prefix (fill does it, under m.mu).
func (m *mirror) replace(prefix string, fill func()) {
	m.mu.Lock()
	fill()
	m.listed[prefix] = true
	m.mu.Unlock()
	m.kick()
}

// apply records one change (under m.mu); it kicks the router when routing
// could change.
func (m *mirror) apply(change func() bool) {
	m.mu.Lock()
	changed := change()
	m.mu.Unlock()
	if changed {
		m.kick()
	}
}

func sameBorrowed(a, b map[netip.Addr]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// snapshot returns the routed blocks (a confirmed affinity whose block is
// affine to the same node) and every borrowed address; ok is false until
// both prefixes have been listed once.
func (m *mirror) snapshot() (blocks []routing.BlockAffinity, borrowed []routing.BorrowedAddr, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.listed[ipam.AffinityPrefix] || !m.listed[ipam.BlockPrefix] {
		return nil, nil, false
	}
	for _, a := range m.affs {
		if !a.confirmed {
			continue
		}
		if b, ok := m.blocks[a.cidr]; !ok || b.Node != a.node {
			continue // dangling affinity, or the block is someone else's
		}
		blocks = append(blocks, routing.BlockAffinity{Node: a.node, CIDR: a.cidr})
	}
	for _, b := range m.blocks {
		for addr, node := range b.Borrowed {
			borrowed = append(borrowed, routing.BorrowedAddr{Node: node, Addr: addr})
		}
	}
	slices.SortFunc(blocks, func(a, b routing.BlockAffinity) int {
		if c := a.CIDR.Addr().Compare(b.CIDR.Addr()); c != 0 {
			return c
		}
		return strings.Compare(a.Node, b.Node)
	})
	slices.SortFunc(borrowed, func(a, b routing.BorrowedAddr) int { return a.Addr.Compare(b.Addr) })
	return blocks, borrowed, true
}
