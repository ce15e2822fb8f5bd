package router

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// mirror keeps the IPAM state routing needs (confirmed affinities, block
// owners, borrowed addresses) in step with the datastore: each prefix is
// listed, then watched from the listing's revision; a broken or compacted
// watch relists. While the datastore is unreachable the last state stays.
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
	var wg sync.WaitGroup
	for _, prefix := range []string{ipam.AffinityPrefix, ipam.BlockPrefix} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.sync(ctx, prefix)
		}()
	}
	wg.Wait()
	return nil
}

func (m *mirror) sync(ctx context.Context, prefix string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		kvs, rev, err := m.store.List(lctx, prefix)
		cancel()
		if err != nil {
			m.log.Warn("list IPAM state failed; keeping the last known state", "prefix", prefix, "error", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		m.replace(prefix, kvs)
		for ev := range m.store.Watch(ctx, prefix, rev+1) {
			if ev.Type == datastore.EventError {
				m.log.Info("IPAM watch ended; relisting", "prefix", prefix, "error", ev.Err)
				break
			}
			m.apply(prefix, ev.Type == datastore.EventDelete, &ev.KV)
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// replace swaps in a fresh listing of one prefix.
func (m *mirror) replace(prefix string, kvs []*datastore.KV) {
	m.mu.Lock()
	if prefix == ipam.AffinityPrefix {
		m.affs = map[string]affinity{}
	} else {
		m.blocks = map[netip.Prefix]ipam.BlockOwners{}
	}
	for _, kv := range kvs {
		m.applyLocked(prefix, false, kv)
	}
	m.listed[prefix] = true
	m.mu.Unlock()
	m.kick()
}

func (m *mirror) apply(prefix string, deleted bool, kv *datastore.KV) {
	m.mu.Lock()
	changed := m.applyLocked(prefix, deleted, kv)
	m.mu.Unlock()
	if changed {
		m.kick()
	}
}

// applyLocked records one key; it reports whether routing could change.
func (m *mirror) applyLocked(prefix string, deleted bool, kv *datastore.KV) bool {
	if prefix == ipam.AffinityPrefix {
		if deleted {
			_, had := m.affs[kv.Key]
			delete(m.affs, kv.Key)
			return had
		}
		node, cidr, ok, err := ipam.ParseAffinity(kv.Key, kv.Value)
		if err != nil {
			m.log.Warn("ignoring unreadable affinity (see tabby ipam check)", "key", kv.Key, "error", err)
			return false
		}
		a := affinity{node: node, cidr: cidr, confirmed: ok}
		old, had := m.affs[kv.Key]
		m.affs[kv.Key] = a
		return !had || old != a
	}
	if deleted {
		cidr, err := ipam.ParseBlockKey(kv.Key)
		if err != nil {
			return false
		}
		_, had := m.blocks[cidr]
		delete(m.blocks, cidr)
		return had
	}
	b, err := ipam.ParseBlock(kv.Key, kv.Value)
	if err != nil {
		m.log.Warn("ignoring unreadable block (see tabby ipam check)", "key", kv.Key, "error", err)
		return false
	}
	old, had := m.blocks[b.CIDR]
	m.blocks[b.CIDR] = b
	return !had || old.Node != b.Node || !sameBorrowed(old.Borrowed, b.Borrowed)
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

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
