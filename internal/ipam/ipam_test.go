package ipam

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// TestAllocateAndRelease: an address comes from a block affine to the node,
// in its pool; release by handle frees it, and is idempotent.
func TestAllocateAndRelease(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p4", "10.10.0.0/16")
		createPool(t, s, "p6", "fd00:10::/64")
		createNode(t, s, "n1", nil)
		m := newIPAM(t, s, nil)
		got := alloc(t, m, Request{Handle: HandleID("net", "c1", "eth0"), Node: "n1", IPv4: 1, IPv6: 1})
		if len(got) != 2 || !got[0].Addr.Is4() || got[1].Addr.Is4() {
			t.Fatalf("Allocate = %+v, want one IPv4 then one IPv6", got)
		}
		for _, a := range got {
			if !a.Block.Contains(a.Addr) || a.Pool == nil || !mustPfx(a.Pool.Spec.CIDR).Contains(a.Block.Addr()) {
				t.Errorf("%s: not in its block %s of its pool %v", a.Addr, a.Block, a.Pool)
			}
		}
		if got[0].Block.Bits() != 26 || got[1].Block.Bits() != 122 {
			t.Errorf("blocks %s, %s: want the default sizes /26 and /122", got[0].Block, got[1].Block)
		}
		blocks, err := m.NodeBlocks(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) != 2 || blocks[0].CIDR != got[0].Block || blocks[0].InUse != 1 || blocks[0].Node != "n1" {
			t.Errorf("NodeBlocks = %+v", blocks)
		}
		addrs, err := m.HandleAddrs(ctx, HandleID("net", "c1", "eth0"))
		if err != nil || len(addrs) != 2 {
			t.Errorf("HandleAddrs = %v, %v", addrs, err)
		}
		checkClean(t, m, map[string]bool{HandleID("net", "c1", "eth0"): true})

		freed, err := m.ReleaseHandle(ctx, HandleID("net", "c1", "eth0"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(addrsOf(got), freed, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("ReleaseHandle freed (-want +got):\n%s", diff)
		}
		if again, err := m.ReleaseHandle(ctx, HandleID("net", "c1", "eth0")); err != nil || again != nil {
			t.Errorf("second ReleaseHandle = %v, %v; want nothing, no error", again, err)
		}
		checkClean(t, m, map[string]bool{})
	})
}

// TestAllocateIdempotent: asking again for a handle returns its addresses;
// asking for something else is refused.
func TestAllocateIdempotent(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		createPool(t, s, "p4", "10.10.0.0/16")
		m := newIPAM(t, s, nil)
		first := alloc(t, m, v4("h1", "n1"))
		again := alloc(t, m, v4("h1", "n1"))
		if first[0].Addr != again[0].Addr {
			t.Errorf("second Allocate gave %s, first %s", again[0].Addr, first[0].Addr)
		}
		// A different IPAM (a restarted agent: no cached view) too.
		other := alloc(t, newIPAM(t, s, nil), v4("h1", "n1"))
		if other[0].Addr != first[0].Addr {
			t.Errorf("Allocate from a fresh IPAM gave %s, want %s", other[0].Addr, first[0].Addr)
		}
		_, err := m.Allocate(context.Background(), Request{Handle: "h1", Node: "n1", IPv4: 2})
		if !errors.Is(err, ErrHandleMismatch) {
			t.Errorf("Allocate of 2 for a handle holding 1: %v, want ErrHandleMismatch", err)
		}
	})
}

// TestReleasedAddressReusedLast: a released address goes back to the end
// of its block's queue.
func TestReleasedAddressReusedLast(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p4", "10.20.0.0/28", blockSize(29))
		m := newIPAM(t, s, nil)
		a := alloc(t, m, v4("a", "n1"))[0]
		b := alloc(t, m, v4("b", "n1"))[0]
		if _, err := m.ReleaseHandle(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		var next []netip.Addr
		for _, h := range []string{"c", "d", "e", "f", "g", "h", "i"} {
			next = append(next, alloc(t, m, v4(h, "n1"))[0].Addr)
		}
		if i := slices.Index(next, a.Addr); i != len(next)-1 {
			t.Errorf("released %s came back at position %d of %v; want last", a.Addr, i, next)
		}
		if slices.Contains(next, b.Addr) {
			t.Errorf("%s handed out twice", b.Addr)
		}
	})
}

// TestStaleReleaseCannotFreeReallocated: a release naming the sequence
// number it saw does nothing once the address was released and allocated
// again, even to the same handle.
func TestStaleReleaseCannotFreeReallocated(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p4", "10.30.0.0/24")
		createNode(t, s, "n1", nil)
		m := newIPAM(t, s, nil)
		old := alloc(t, m, v4("h1", "n1"))[0]
		if _, err := m.ReleaseHandle(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		again := alloc(t, m, Request{Handle: "h1", Node: "n1", Static: []netip.Addr{old.Addr}})[0]
		if again.Seq == old.Seq {
			t.Fatalf("re-allocation has the old sequence number %d", old.Seq)
		}
		ok, err := m.ReleaseAllocation(ctx, old.Addr, "h1", old.Seq)
		if err != nil || ok {
			t.Fatalf("stale ReleaseAllocation = %v, %v; want false, nil", ok, err)
		}
		if addrs, _ := m.HandleAddrs(ctx, "h1"); len(addrs) != 1 {
			t.Fatalf("the stale release freed the new allocation: %v", addrs)
		}
		ok, err = m.ReleaseAllocation(ctx, again.Addr, "h1", again.Seq)
		if err != nil || !ok {
			t.Fatalf("current ReleaseAllocation = %v, %v; want true, nil", ok, err)
		}
		if err := m.ReleaseAddr(ctx, again.Addr); !errors.Is(err, ErrNotAllocated) {
			t.Errorf("ReleaseAddr of a free address: %v, want ErrNotAllocated", err)
		}
		checkClean(t, m, map[string]bool{})
	})
}

// TestStaticAddresses: specific addresses, and every way to ask wrongly.
func TestStaticAddresses(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p4", "10.40.0.0/16")
		createPool(t, s, "off", "10.41.0.0/16", disabled())
		createPool(t, s, "p6", "fd00:40::/64")
		m := newIPAM(t, s, nil)
		want := []netip.Addr{mustAddr("10.40.7.9"), mustAddr("fd00:40::99")}
		got := alloc(t, m, Request{Handle: "s1", Node: "n1", Static: want, IPv4: 1, IPv6: 1})
		if diff := cmp.Diff(want, addrsOf(got), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("static allocation (-want +got):\n%s", diff)
		}
		// Idempotent.
		alloc(t, m, Request{Handle: "s1", Node: "n1", Static: want})
		for _, tc := range []struct {
			name string
			req  Request
			is   error
			want string
		}{
			{"held by another handle", Request{Handle: "s2", Node: "n2", Static: want[:1]}, ErrInUse, `already held by handle "s1"`},
			{"outside every pool", Request{Handle: "s3", Node: "n1", Static: []netip.Addr{mustAddr("192.0.2.1")}}, nil, "192.0.2.1 is not in any IP pool"},
			{"disabled pool", Request{Handle: "s4", Node: "n1", Static: []netip.Addr{mustAddr("10.41.0.1")}}, nil, "disabled"},
			{"not a requested pool", Request{Handle: "s5", Node: "n1", Static: []netip.Addr{mustAddr("10.40.0.1")}, Pools4: []string{"off"}}, nil, "not among the requested pools"},
			{"other static of the handle", Request{Handle: "s1", Node: "n1", Static: []netip.Addr{mustAddr("10.40.7.10")}}, ErrHandleMismatch, "release the handle first"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := ipamKeys(t, s)
				_, err := m.Allocate(ctx, tc.req)
				if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
					t.Fatalf("Allocate = %v; want an error containing %q", err, tc.want)
				}
				if diff := cmp.Diff(before, ipamKeys(t, s)); diff != "" {
					t.Errorf("a refused request changed the IPAM keys (-before +after):\n%s", diff)
				}
			})
		}
		// The static address of another host's block is borrowed.
		b, err := m.Borrowed(ctx, "n2")
		if err != nil || len(b) != 0 {
			t.Errorf("Borrowed(n2) = %v, %v", b, err)
		}
	})
}

// TestBadRequests: bad input gets an error naming the field, and writes nothing.
func TestBadRequests(t *testing.T) {
	s := newStoreWithPool(t)
	m := newIPAM(t, s, nil)
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"no handle", Request{Node: "n1", IPv4: 1}, "handle: is required"},
		{"slash in handle", Request{Handle: "a/b", Node: "n1", IPv4: 1}, "handle:"},
		{"space in handle", Request{Handle: "a b", Node: "n1", IPv4: 1}, "handle:"},
		{"no node", Request{Handle: "h", IPv4: 1}, "node: is required"},
		{"slash in node", Request{Handle: "h", Node: "x/y", IPv4: 1}, "node:"},
		{"nothing asked", Request{Handle: "h", Node: "n1"}, "asks for no address"},
		{"negative", Request{Handle: "h", Node: "n1", IPv4: -1}, "negative"},
		{"too many", Request{Handle: "h", Node: "n1", IPv4: 300}, "at most 256"},
		{"bad use", Request{Handle: "h", Node: "n1", IPv4: 1, Use: "Other"}, "use:"},
		{"invalid static", Request{Handle: "h", Node: "n1", Static: []netip.Addr{{}}}, "static[0]"},
		{"static twice", Request{Handle: "h", Node: "n1", Static: []netip.Addr{mustAddr("10.50.0.1"), mustAddr("10.50.0.1")}}, "static[1]"},
		{"mapped static", Request{Handle: "h", Node: "n1", Static: []netip.Addr{mustAddr("::ffff:10.50.0.1")}}, "static[0]"},
		{"missing pool", Request{Handle: "h", Node: "n1", IPv4: 1, Pools4: []string{"nope"}}, `pools4: IP pool "nope" not found`},
		{"wrong family pool", Request{Handle: "h", Node: "n1", IPv6: 1, Pools6: []string{"p4"}}, "not an IPv6 pool"},
		{"no IPv6 pool", Request{Handle: "h", Node: "n1", IPv6: 1}, "no IPv6 pool can be used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Allocate(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Allocate = %v; want an error containing %q", err, tc.want)
			}
			if keys := ipamKeys(t, s); len(keys) != 0 {
				t.Errorf("a refused request wrote %v", keys)
			}
		})
	}
}

// newStoreWithPool is an in-memory store with one pool (for table tests
// whose invariants the etcd runs of other tests already cover).
func newStoreWithPool(t *testing.T) datastore.Store {
	t.Helper()
	s := memstore.New()
	createPool(t, s, "p4", "10.50.0.0/16")
	return s
}

// TestPoolSelection: named pools, nodeSelector, allowedUses, disabled.
func TestPoolSelection(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "rack-a", "10.60.0.0/24", nodeSelector(`rack == "a"`))
		createPool(t, s, "rack-b", "10.61.0.0/24", nodeSelector(`rack == "b"`))
		createPool(t, s, "tunnels", "10.62.0.0/24", uses(api.AllowedUseTunnel))
		createNode(t, s, "na", map[string]string{"rack": "a"})
		createNode(t, s, "nb", map[string]string{"rack": "b"})
		m := newIPAM(t, s, nil)
		if a := alloc(t, m, v4("wa", "na"))[0]; !mustPfx("10.60.0.0/24").Contains(a.Addr) || a.Pool.Name != "rack-a" {
			t.Errorf("node in rack a got %s from %s", a.Addr, a.Pool.Name)
		}
		if a := alloc(t, m, v4("wb", "nb"))[0]; !mustPfx("10.61.0.0/24").Contains(a.Addr) {
			t.Errorf("node in rack b got %s", a.Addr)
		}
		if a := alloc(t, m, Request{Handle: VXLANTunnelHandlePrefix + "na", Node: "na", IPv4: 1, Use: api.AllowedUseTunnel, Pools4: []string{"10.62.0.0/24"}})[0]; !mustPfx("10.62.0.0/24").Contains(a.Addr) {
			t.Errorf("tunnel address %s not from the pool named by CIDR", a.Addr)
		}
		_, err := m.Allocate(ctx, Request{Handle: "x", Node: "na", IPv4: 1, Pools4: []string{"rack-b"}})
		if err == nil || !strings.Contains(err.Error(), `does not select node "na"`) {
			t.Errorf("asking for another rack's pool: %v", err)
		}
		_, err = m.Allocate(ctx, Request{Handle: "x", Node: "na", IPv4: 1, Pools4: []string{"tunnels"}})
		if err == nil || !strings.Contains(err.Error(), "allowedUses") {
			t.Errorf("asking for a workload address from a tunnel pool: %v", err)
		}
		_, err = m.Allocate(ctx, v4("x", "elsewhere"))
		if err == nil || !strings.Contains(err.Error(), `no IPv4 pool can be used by node "elsewhere"`) {
			t.Errorf("node no pool selects: %v", err)
		}
	})
}

// TestPoolExhausted: a pool smaller than the demand fails cleanly with
// "pool X exhausted", and a failed request leaves nothing behind — not
// even for the other family of a dual-stack request.
func TestPoolExhausted(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "small", "10.70.0.0/26")
		createNode(t, s, "n1", nil)
		createPool(t, s, "tiny6", "fd00:70::/126", blockSize(126))
		m := newIPAM(t, s, nil)

		_, err := m.Allocate(ctx, Request{Handle: "big", Node: "n1", IPv4: 100})
		if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), `pool "small" (10.70.0.0/26) exhausted`) || !strings.Contains(err.Error(), "needs 100 IPv4 address(es) and only 64") {
			t.Fatalf("Allocate(100 from 64) = %v; want pool \"small\" exhausted", err)
		}
		if keys := ipamKeys(t, s); len(keys) != 0 {
			t.Fatalf("the failed request left %v", keys)
		}
		// Four dual-stack requests fit the IPv6 pool; the fifth must fail
		// and must not keep its IPv4 address.
		for i := range 4 {
			alloc(t, m, Request{Handle: "ds" + string(rune('a'+i)), Node: "n1", IPv4: 1, IPv6: 1})
		}
		_, err = m.Allocate(ctx, Request{Handle: "ds-e", Node: "n1", IPv4: 1, IPv6: 1})
		if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), `pool "tiny6"`) {
			t.Fatalf("fifth dual-stack request = %v; want tiny6 exhausted", err)
		}
		if addrs, _ := m.HandleAddrs(ctx, "ds-e"); len(addrs) != 0 {
			t.Fatalf("failed dual-stack request kept %v", addrs)
		}
		u, err := m.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range u.Pools {
			if p.InUse != 4 {
				t.Errorf("pool %s has %d in use, want 4", p.Pool.Name, p.InUse)
			}
		}
		for i := 4; i < 64; i++ {
			alloc(t, m, v4("fill"+string(rune('0'+i/10))+string(rune('0'+i%10)), "n1"))
		}
		_, err = m.Allocate(ctx, v4("one-more", "n1"))
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("65th address: %v, want exhausted", err)
		}
		live := map[string]bool{}
		for _, h := range handlesIn(t, s) {
			live[h] = true
		}
		checkClean(t, m, live)
	})
}

func handlesIn(t testing.TB, s datastore.Store) []string {
	t.Helper()
	var out []string
	for _, k := range ipamKeys(t, s) {
		if h, ok := strings.CutPrefix(k, handlePrefix); ok {
			out = append(out, h)
		}
	}
	return out
}

// TestBorrowingAndStrictAffinity: with a pool's only block taken, another
// host borrows from it — unless strictAffinity forbids it, which the
// error then says.
func TestBorrowingAndStrictAffinity(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "one", "10.80.0.0/26")
		createNode(t, s, "n1", nil)
		createNode(t, s, "n2", nil)
		m := newIPAM(t, s, nil)
		own := alloc(t, m, v4("h1", "n1"))[0]
		b := alloc(t, m, v4("h2", "n2"))[0]
		if b.Block != own.Block {
			t.Fatalf("borrowed %s from %s, want from %s", b.Addr, b.Block, own.Block)
		}
		if got, err := m.Borrowed(ctx, "n2"); err != nil || len(got) != 1 || got[0] != b.Addr {
			t.Errorf("Borrowed(n2) = %v, %v; want [%s]", got, err, b.Addr)
		}
		if nb, _ := m.NodeBlocks(ctx, "n2"); len(nb) != 0 {
			t.Errorf("n2 owns %v, want no block", nb)
		}
		setConfig(t, s, api.IPAMConfigSpec{StrictAffinity: true})
		_, err := m.Allocate(ctx, v4("h3", "n2"))
		if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "strictAffinity is on") {
			t.Fatalf("strict allocation = %v; want exhausted because of strictAffinity", err)
		}
		checkClean(t, m, map[string]bool{"h1": true, "h2": true})
	})
}

// TestMaxBlocksPerHost: a host stops claiming blocks at the limit.
func TestMaxBlocksPerHost(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p", "10.90.0.0/24", blockSize(30))
		setConfig(t, s, api.IPAMConfigSpec{StrictAffinity: true, MaxBlocksPerHost: 2})
		m := newIPAM(t, s, nil)
		for i := range 8 {
			alloc(t, m, v4("h"+string(rune('a'+i)), "n1"))
		}
		_, err := m.Allocate(ctx, v4("h-next", "n1"))
		if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "maxBlocksPerHost") {
			t.Fatalf("ninth allocation = %v; want the maxBlocksPerHost limit", err)
		}
		if nb, _ := m.NodeBlocks(ctx, "n1"); len(nb) != 2 {
			t.Errorf("n1 owns %d blocks, want 2", len(nb))
		}
	})
}

// TestCommonCaseOneRoundTrip: once a node's view is cached, an allocation
// from its block is exactly one datastore round trip (a transaction).
func TestCommonCaseOneRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		createPool(t, s, "p", "10.100.0.0/16")
		createPool(t, s, "p6", "fd00:100::/64")
		createNode(t, s, "n1", nil)
		c := &counting{Store: s}
		// As in the agent: reservations come from its watched cache.
		m, err := NewWithConfig(c, nil, Config{Reservations: func() []*api.IPReservation { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		alloc(t, m, Request{Handle: "warm", Node: "n1", IPv4: 1, IPv6: 1})
		c.reads.Store(0)
		c.txns.Store(0)
		const n = 20
		for i := range n {
			alloc(t, m, Request{Handle: "h" + string(rune('a'+i)), Node: "n1", IPv4: 1, IPv6: 1})
		}
		if r, x := c.reads.Load(), c.txns.Load(); r != 0 || x != n {
			t.Errorf("%d dual-stack allocations took %d reads and %d transactions; want 0 and %d", n, r, x, n)
		}
	})
}

// TestViewGoesStale: the cached view never hands out an address another
// process took, and picks up pool changes.
func TestViewGoesStale(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p", "10.110.0.0/24", blockSize(30))
		a := newIPAM(t, s, nil)
		b := newIPAM(t, s, nil) // another process working for the same node
		seen := map[netip.Addr]string{}
		for i := range 12 {
			m := a
			if i%3 == 0 {
				m = b
			}
			h := "h" + string(rune('a'+i))
			got := alloc(t, m, v4(h, "n1"))[0]
			if prev, dup := seen[got.Addr]; dup {
				t.Fatalf("%s given to %s and %s", got.Addr, prev, h)
			}
			seen[got.Addr] = h
		}
		// Disable the pool: the cached view must not keep using it.
		r, err := datastore.NewClient(s).Get(ctx, "IPPool", "", "p")
		if err != nil {
			t.Fatal(err)
		}
		p := r.(*api.IPPool)
		p.Spec.Disabled = true
		if _, err := datastore.NewClient(s).Update(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Allocate(ctx, v4("after-disable", "n1")); err == nil || !strings.Contains(err.Error(), "disabled") {
			t.Fatalf("allocation from a disabled pool: %v", err)
		}
	})
}

// TestClaimAbandonedBetweenPendingAndConfirmed: a host that dies after
// marking its claim pending blocks no one for long: another host claims
// the block after ClaimTimeout (removing the abandoned claim), and GC
// cleans what is left.
func TestClaimAbandonedBetweenPendingAndConfirmed(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		clk := newClock()
		createPool(t, s, "one", "10.120.0.0/26")
		createNode(t, s, "dead", nil)
		createNode(t, s, "alive", nil)
		dying := newIPAM(t, s, clk)
		crash := errors.New("host died")
		dying.afterPending = func(string, netip.Prefix) error { return crash }
		if _, err := dying.Allocate(ctx, v4("d1", "dead")); !errors.Is(err, crash) {
			t.Fatalf("dying allocation: %v", err)
		}
		keys := ipamKeys(t, s)
		if len(keys) != 1 || !strings.Contains(keys[0], "/host/dead/") {
			t.Fatalf("after the crash: %v; want only the pending affinity", keys)
		}
		m := newIPAM(t, s, clk)
		r, err := m.Check(ctx, map[string]bool{})
		if err != nil || !r.OK() {
			t.Fatalf("a fresh pending claim is not a problem: %v %v", r, err)
		}
		_, err = m.Allocate(ctx, v4("a1", "alive"))
		if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), `being claimed by node "dead"`) {
			t.Fatalf("allocation during the claim: %v; want exhausted, naming the pending claim", err)
		}
		clk.Advance(DefaultClaimTimeout + time.Second)
		r, _ = m.Check(ctx, map[string]bool{})
		if r.OK() || r.Problems[0].Kind != ProblemStalePending {
			t.Errorf("check after the timeout: %+v; want a stale pending affinity", r.Problems)
		}
		got := alloc(t, m, v4("a1", "alive"))[0]
		if got.Block != mustPfx("10.120.0.0/26") {
			t.Fatalf("got %s from %s", got.Addr, got.Block)
		}
		for _, k := range ipamKeys(t, s) {
			if strings.Contains(k, "/host/dead/") {
				t.Errorf("abandoned claim %s survived the takeover", k)
			}
		}
		checkClean(t, m, map[string]bool{"a1": true})
	})
}

// TestLateClaimerLoses: a host that stalls between the phases and resumes
// after another host took the block ends up with no affinity for it.
func TestLateClaimerLoses(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		clk := newClock()
		createPool(t, s, "one", "10.121.0.0/26")
		createNode(t, s, "slow", nil)
		createNode(t, s, "fast", nil)
		slow := newIPAM(t, s, clk)
		fast := newIPAM(t, s, clk)
		paused, resume := make(chan struct{}), make(chan struct{})
		slow.afterPending = func(string, netip.Prefix) error {
			close(paused)
			<-resume
			return nil
		}
		errc := make(chan error, 1)
		go func() {
			_, err := slow.Allocate(ctx, v4("s1", "slow"))
			errc <- err
		}()
		<-paused
		clk.Advance(DefaultClaimTimeout + time.Second)
		f := alloc(t, fast, v4("f1", "fast"))[0]
		slow.afterPending = nil
		close(resume)
		if err := <-errc; err != nil {
			t.Fatalf("slow host: %v", err)
		}
		got, _ := slow.HandleAddrs(ctx, "s1")
		if len(got) != 1 || got[0] == f.Addr || !f.Block.Contains(got[0]) {
			t.Fatalf("slow host got %v; want an address borrowed from the fast host's block %s", got, f.Block)
		}
		if nb, _ := slow.NodeBlocks(ctx, "slow"); len(nb) != 0 {
			t.Errorf("the slow host owns %v", nb)
		}
		checkClean(t, fast, map[string]bool{"s1": true, "f1": true})
	})
}

// TestUnclaimOnFailure: blocks claimed for a request that then fails are
// returned.
func TestUnclaimOnFailure(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p4", "10.130.0.0/24")
		m := newIPAM(t, s, nil)
		_, err := m.Allocate(ctx, Request{Handle: "h", Node: "n1", IPv4: 1, IPv6: 1})
		if err == nil {
			t.Fatal("dual-stack without an IPv6 pool succeeded")
		}
		_, err = m.Allocate(ctx, Request{Handle: "h", Node: "n1", IPv4: 250, Pools4: []string{"p4"}, IPv6: 0})
		if err != nil {
			t.Fatalf("250 of a /24: %v", err)
		}
		if _, err := m.ReleaseHandle(ctx, "h"); err != nil {
			t.Fatal(err)
		}
		m.GC(ctx, GCOptions{LiveNodes: func(context.Context) (map[string]bool, error) { return map[string]bool{"n1": true}, nil }})
		m.GC(ctx, GCOptions{LiveNodes: func(context.Context) (map[string]bool, error) { return map[string]bool{"n1": true}, nil }})
		_, err = m.Allocate(ctx, Request{Handle: "h2", Node: "n1", IPv4: 257})
		if err == nil || !strings.Contains(err.Error(), "at most 256") {
			t.Fatalf("257 addresses: %v", err)
		}
		_, err = m.Allocate(ctx, Request{Handle: "h2", Node: "n1", IPv4: 256, IPv6: 0})
		if err != nil {
			t.Fatalf("256 of a /24: %v", err)
		}
		_, err = m.Allocate(ctx, Request{Handle: "h3", Node: "n1", IPv4: 1})
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("one more: %v", err)
		}
		if _, err := m.ReleaseHandle(ctx, "h2"); err != nil {
			t.Fatal(err)
		}
		m.GC(ctx, GCOptions{LiveNodes: func(context.Context) (map[string]bool, error) { return map[string]bool{"n1": true}, nil }})
		m.GC(ctx, GCOptions{LiveNodes: func(context.Context) (map[string]bool, error) { return map[string]bool{"n1": true}, nil }})
		if keys := ipamKeys(t, s); len(keys) != 0 {
			t.Errorf("failed requests left %v", keys)
		}
	})
}

// TestCheckPoolChange: bad pools are refused with the resource checks'
// messages, and a pool in use cannot be deleted.
func TestCheckPoolChange(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		p := createPool(t, s, "p", "10.140.0.0/16")
		m := newIPAM(t, s, nil)
		for _, tc := range []struct {
			name     string
			old, new *api.IPPool
			want     string
		}{
			{"overlap", nil, mkPool("q", "10.140.128.0/17"), "overlaps pool"},
			{"link-local v4", nil, mkPool("q", "169.254.0.0/24"), "169.254.0.0/16"},
			{"link-local v6", nil, mkPool("q", "fe80::/64"), "fe80::/10"},
			{"block too big", nil, mkPool("q", "10.200.0.0/16", blockSize(19)), "spec.blockSize"},
			{"block too small v6", nil, mkPool("q", "fd00:1::/64", blockSize(115)), "spec.blockSize"},
			{"change cidr", p, mkPool("p", "10.141.0.0/16"), "spec.cidr"},
			{"change block size", p, mkPool("p", "10.140.0.0/16", blockSize(24)), "spec.blockSize"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := m.CheckPoolChange(ctx, tc.old, tc.new)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("CheckPoolChange = %v; want an error containing %q", err, tc.want)
				}
			})
		}
		if err := m.CheckPoolChange(ctx, nil, mkPool("q", "10.150.0.0/16")); err != nil {
			t.Errorf("a good new pool: %v", err)
		}
		if err := m.CheckPoolChange(ctx, p, mkPool("p", "10.140.0.0/16", disabled())); err != nil {
			t.Errorf("disabling a pool: %v", err)
		}
		a := alloc(t, m, v4("h", "n1"))[0]
		if err := m.CheckPoolChange(ctx, p, nil); err == nil || !strings.Contains(err.Error(), "still has 1 allocated") {
			t.Fatalf("deleting a pool in use: %v", err)
		}
		if err := m.DeletePool(ctx, "p"); err == nil {
			t.Fatal("DeletePool of a pool in use succeeded")
		}
		r, _ := datastore.NewClient(s).Get(ctx, "IPPool", "", "p")
		if r.(*api.IPPool).Spec.Disabled {
			t.Error("a refused DeletePool left the pool disabled")
		}
		if err := m.ReleaseAddr(ctx, a.Addr); err != nil {
			t.Fatal(err)
		}
		if err := m.DeletePool(ctx, "p"); err != nil {
			t.Fatalf("DeletePool of an empty pool: %v", err)
		}
		if keys := ipamKeys(t, s); len(keys) != 0 {
			t.Errorf("DeletePool left %v", keys)
		}
		// A block left by a pool with another block size blocks a new pool over it.
		createPool(t, s, "r", "10.160.0.0/24", blockSize(28))
		alloc(t, m, v4("r1", "n1"))
		if _, err := datastore.NewClient(s).Delete(ctx, "IPPool", "", "r", ""); err != nil {
			t.Fatal(err)
		}
		if err := m.CheckPoolChange(ctx, nil, mkPool("r2", "10.160.0.0/24")); err == nil || !strings.Contains(err.Error(), "left from a pool with another block size") {
			t.Errorf("new pool over leftover blocks: %v", err)
		}
	})
}

// TestEmptyHandleRecordReplaced: a handle record that holds nothing does
// not block a new allocation for the handle.
func TestEmptyHandleRecordReplaced(t *testing.T) {
	s := newStoreWithPool(t)
	put(t, s, handleKey("h"), handleValue{Block: map[string]int{"10.50.0.0/26": 1}})
	m := newIPAM(t, s, nil)
	if got := alloc(t, m, v4("h", "n1")); len(got) != 1 {
		t.Fatalf("Allocate = %v", got)
	}
}
