package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// hostStores gives n simulated hosts their own connection to one
// datastore: the same in-memory store, or separate clients of one real
// embedded etcd.
func forEachCluster(t *testing.T, n int, body func(t *testing.T, stores []datastore.Store)) {
	t.Helper()
	t.Run("memstore", func(t *testing.T) {
		s := memstore.New()
		stores := make([]datastore.Store, n)
		for i := range stores {
			stores[i] = s
		}
		body(t, stores)
	})
	t.Run("etcd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping the etcd run")
		}
		_, cfg := etcdtest.NewServer(t)
		stores := make([]datastore.Store, n)
		for i := range stores {
			s, err := etcd.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			stores[i] = s
		}
		body(t, stores)
	})
}

// holders is the test's own record of who holds each address: a second
// allocation of a held address is a duplicate.
type holders struct {
	mu sync.Mutex
	m  map[netip.Addr]string
}

func (h *holders) take(t *testing.T, handle string, as []Allocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range as {
		if prev, dup := h.m[a.Addr]; dup {
			t.Errorf("DUPLICATE: %s given to %s while %s holds it", a.Addr, handle, prev)
		}
		h.m[a.Addr] = handle
	}
}

func (h *holders) drop(as []Allocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range as {
		delete(h.m, a.Addr)
	}
}

// checkInPool fails unless each address is in its block, and the block is
// one of its pool's blocks.
func checkInPool(t *testing.T, as []Allocation) {
	t.Helper()
	for _, a := range as {
		if a.Pool == nil {
			t.Errorf("%s: no pool", a.Addr)
			continue
		}
		p, err := parsePool(a.Pool)
		if err != nil || !a.Block.Contains(a.Addr) || !p.fits(a.Block) {
			t.Errorf("%s in block %s: not an address of a block of pool %s (%v)", a.Addr, a.Block, a.Pool.Spec.CIDR, err)
		}
	}
}

// TestConcurrentHosts: 8 hosts allocate 2,400 times at once (a quarter
// dual-stack) with releases interleaved; no address is ever held twice,
// every address is in a block of its pool, and ipam check is clean at the end.
func TestConcurrentHosts(t *testing.T) {
	const hosts, perHost = 8, 300
	forEachCluster(t, hosts, func(t *testing.T, stores []datastore.Store) {
		ctx := ctxT(t)
		createPool(t, stores[0], "v4", "10.0.0.0/20")
		createPool(t, stores[0], "v6", "fd00:1::/112")
		for i := range hosts {
			createNode(t, stores[0], fmt.Sprintf("host-%d", i), nil)
		}
		held := &holders{m: map[netip.Addr]string{}}
		var mu sync.Mutex
		live := map[string]bool{}
		allocated := 0
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				node := fmt.Sprintf("host-%d", i)
				m := newIPAM(t, stores[i], nil)
				r := rand.New(rand.NewPCG(uint64(i), 7))
				var mine []string
				got := map[string][]Allocation{}
				for j := range perHost {
					h := HandleID("net", fmt.Sprintf("%s-c%d", node, j), "eth0")
					req := Request{Handle: h, Node: node, IPv4: 1}
					if j%4 == 0 {
						req.IPv6 = 1
					}
					as, err := m.Allocate(ctx, req)
					if err != nil {
						t.Errorf("%s: %v", node, err)
						return
					}
					checkInPool(t, as)
					held.take(t, h, as)
					got[h] = as
					mine = append(mine, h)
					mu.Lock()
					live[h] = true
					allocated += len(as)
					mu.Unlock()
					if j%3 == 2 {
						k := r.IntN(len(mine))
						victim := mine[k]
						mine = append(mine[:k], mine[k+1:]...)
						held.drop(got[victim])
						mu.Lock()
						delete(live, victim)
						mu.Unlock()
						if k%2 == 0 {
							if _, err := m.ReleaseHandle(ctx, victim); err != nil {
								t.Errorf("%s: release %s: %v", node, victim, err)
							}
						} else {
							for _, a := range got[victim] {
								if ok, err := m.ReleaseAllocation(ctx, a.Addr, victim, a.Seq); err != nil || !ok {
									t.Errorf("%s: release %s of %s: %v %v", node, a.Addr, victim, ok, err)
								}
							}
						}
					}
				}
			}()
		}
		wg.Wait()
		if allocated < 2000 {
			t.Errorf("only %d addresses allocated", allocated)
		}
		m := newIPAM(t, stores[0], nil)
		r := checkClean(t, m, live)
		if r.Allocations != len(held.m) {
			t.Errorf("IPAM holds %d addresses, the hosts %d", r.Allocations, len(held.m))
		}
		u, err := m.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range u.Pools {
			for _, b := range p.Blocks {
				if b.Node == "" {
					t.Errorf("block %s without affinity", b.CIDR)
				}
			}
		}
		t.Logf("%d addresses allocated, %d held at the end, %d blocks", allocated, len(held.m), r.Blocks)
	})
}

// TestConcurrentExhaustion: 8 hosts ask for more dual-stack addresses than
// the IPv6 pool has. Failures are "pool ... exhausted" and leave nothing
// behind (no IPv4 address without its IPv6 one); what succeeded is
// unique; the pool can be filled to the last address afterwards.
func TestConcurrentExhaustion(t *testing.T) {
	const hosts, perHost = 8, 40 // 320 requests for 256 IPv6 addresses
	forEachCluster(t, hosts, func(t *testing.T, stores []datastore.Store) {
		ctx := ctxT(t)
		createPool(t, stores[0], "v4", "10.1.0.0/23", blockSize(28))
		createPool(t, stores[0], "small6", "fd00:2::/120", blockSize(124))
		for i := range hosts {
			createNode(t, stores[0], fmt.Sprintf("host-%d", i), nil)
		}
		held := &holders{m: map[netip.Addr]string{}}
		var mu sync.Mutex
		live := map[string]bool{}
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				node := fmt.Sprintf("host-%d", i)
				m := newIPAM(t, stores[i], nil)
				for j := range perHost {
					h := fmt.Sprintf("%s-%d", node, j)
					as, err := m.Allocate(ctx, Request{Handle: h, Node: node, IPv4: 1, IPv6: 1})
					if err != nil {
						if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), `pool "small6" (fd00:2::/120) exhausted`) {
							t.Errorf("%s: %v; want small6 exhausted", node, err)
						}
						continue
					}
					checkInPool(t, as)
					held.take(t, h, as)
					mu.Lock()
					live[h] = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		m := newIPAM(t, stores[0], nil)
		u, err := m.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range u.Pools {
			if p.InUse != len(live) {
				t.Errorf("pool %s: %d in use for %d successful requests", p.Pool.Name, p.InUse, len(live))
			}
		}
		if len(live) > 256 || len(live) < 200 {
			t.Errorf("%d requests succeeded; want at most (and close to) 256", len(live))
		}
		// Whatever is left can still be allocated, to the last address.
		for i := 0; len(live) < 256; i++ {
			h := fmt.Sprintf("fill-%d", i)
			alloc(t, m, Request{Handle: h, Node: "host-0", IPv4: 1, IPv6: 1})
			live[h] = true
		}
		if _, err := m.Allocate(ctx, Request{Handle: "over", Node: "host-0", IPv4: 1, IPv6: 1}); !errors.Is(err, ErrExhausted) {
			t.Errorf("257th request: %v", err)
		}
		checkClean(t, m, live)
	})
}
