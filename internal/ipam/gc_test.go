package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

func live(hs ...string) func(context.Context) (map[string]bool, error) {
	return func(context.Context) (map[string]bool, error) {
		m := map[string]bool{}
		for _, h := range hs {
			m[h] = true
		}
		return m, nil
	}
}

// TestGCReleasesLeaksAfterGrace: an allocation no endpoint holds is freed
// only after it has been seen leaked for the grace period (and is older
// than it); allocations of live endpoints stay.
func TestGCReleasesLeaksAfterGrace(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		clk := newClock()
		createPool(t, s, "p", "10.150.0.0/24")
		createNode(t, s, "n1", nil)
		m := newIPAM(t, s, clk)
		kept := alloc(t, m, v4("kept", "n1"))[0]
		createWEP(t, s, "w1", "n1", "kept", kept.Addr)
		leaked := alloc(t, m, v4("leaked", "n1"))[0]

		rep, err := m.GC(ctx, GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Released) != 0 || rep.Waiting != 1 {
			t.Fatalf("first pass: released %v, waiting %d; want nothing released, 1 waiting", rep.Released, rep.Waiting)
		}
		r, _ := m.Check(ctx, nil)
		if r.InFlight != 1 || !r.OK() {
			t.Errorf("check of a 0s old allocation: in flight %d, problems %v; want 1 in flight, none", r.InFlight, r.Problems)
		}
		clk.Advance(10 * time.Minute)
		if rep, _ = m.GC(ctx, GCOptions{}); len(rep.Released) != 0 {
			t.Fatalf("released %v before the grace period", rep.Released)
		}
		r, _ = m.Check(ctx, nil)
		if len(r.Problems) != 1 || r.Problems[0].Kind != ProblemLeaked || r.Problems[0].Addr != leaked.Addr {
			t.Errorf("check: %v; want %s leaked", r.Problems, leaked.Addr)
		}
		clk.Advance(6 * time.Minute)
		rep, err = m.GC(ctx, GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Released) != 1 || rep.Released[0].Addr != leaked.Addr || rep.Released[0].Handle != "leaked" {
			t.Fatalf("after the grace period released %+v; want %s", rep.Released, leaked.Addr)
		}
		if addrs, _ := m.HandleAddrs(ctx, "kept"); len(addrs) != 1 {
			t.Errorf("the live endpoint lost its address: %v", addrs)
		}
		checkClean(t, m, nil)
	})
}

// TestGCGraceConfigurable: IPAMConfig's leakGracePeriod sets the grace
// period, and a restarted IPAM starts counting again (never sooner).
func TestGCGraceConfigurable(t *testing.T) {
	s := newStoreWithPool(t)
	createNode(t, s, "n1", nil)
	setConfig(t, s, api.IPAMConfigSpec{LeakGracePeriod: &api.Duration{Duration: time.Minute}})
	clk := newClock()
	m := newIPAM(t, s, clk)
	alloc(t, m, v4("leaked", "n1"))
	clk.Advance(time.Hour)
	if rep, _ := m.GC(ctxT(t), GCOptions{}); len(rep.Released) != 0 {
		t.Fatalf("first sighting released %v", rep.Released)
	}
	m = newIPAM(t, s, clk) // the agent restarts
	clk.Advance(2 * time.Minute)
	if rep, _ := m.GC(ctxT(t), GCOptions{}); len(rep.Released) != 0 {
		t.Fatalf("the restarted IPAM released %v on its first pass", rep.Released)
	}
	clk.Advance(61 * time.Second)
	if rep, _ := m.GC(ctxT(t), GCOptions{}); len(rep.Released) != 1 {
		t.Fatalf("after leakGracePeriod: released %v, want the leak", rep.Released)
	}
}

// TestGCRechecksLiveness: an endpoint written between GC's first read and
// the release saves its addresses.
func TestGCRechecksLiveness(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		clk := newClock()
		createPool(t, s, "p", "10.151.0.0/24")
		createNode(t, s, "n1", nil)
		m := newIPAM(t, s, clk)
		alloc(t, m, Request{Handle: "late", Node: "n1", IPv4: 1})
		calls := 0
		lateLive := func(context.Context) (map[string]bool, error) {
			calls++
			return map[string]bool{"late": calls > 1}, nil
		}
		clk.Advance(time.Hour)
		if _, err := m.GC(ctx, GCOptions{Grace: time.Minute, LiveHandles: lateLive}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		calls = 0
		rep, err := m.GC(ctx, GCOptions{Grace: time.Minute, LiveHandles: lateLive})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Released) != 0 || calls != 2 {
			t.Fatalf("released %v (liveness read %d times); want nothing released after the re-check", rep.Released, calls)
		}
	})
}

// TestGCHandleAllOrNothing: a handle is released only when all its
// allocations are due (calico#5044).
func TestGCHandleAllOrNothing(t *testing.T) {
	s := newStoreWithPool(t)
	createPool(t, s, "p6", "fd00:152::/64")
	createNode(t, s, "n1", nil)
	clk := newClock()
	m := newIPAM(t, s, clk)
	alloc(t, m, Request{Handle: "ds", Node: "n1", IPv4: 1})
	clk.Advance(time.Hour)
	m.GC(ctxT(t), GCOptions{Grace: time.Minute})
	clk.Advance(time.Hour)
	// The handle gets a second, younger allocation (as a Calico-era
	// datastore can hold): give it another handle's fresh IPv6 address.
	b := alloc(t, m, Request{Handle: "other", Node: "n1", IPv6: 1})[0]
	rewriteHandle(t, s, b.Addr, "ds")
	rep, _ := m.GC(ctxT(t), GCOptions{Grace: time.Minute})
	if len(rep.Released) != 0 {
		t.Fatalf("released %v while one allocation of the handle was not yet due", rep.Released)
	}
	clk.Advance(time.Hour)
	rep, _ = m.GC(ctxT(t), GCOptions{Grace: time.Minute})
	if len(rep.Released) != 2 {
		t.Fatalf("released %v; want both allocations of the handle", rep.Released)
	}
}

// rewriteHandle changes the handle of an allocation behind IPAM's back.
func rewriteHandle(t *testing.T, s datastore.Store, a netip.Addr, handle string) {
	t.Helper()
	ctx := ctxT(t)
	kvs, _, _ := s.List(ctx, assignmentPrefix)
	for _, kv := range kvs {
		b, err := decodeBlock(kv.Value)
		if err != nil {
			t.Fatal(err)
		}
		o, ok := b.ordinal(a)
		if !ok {
			continue
		}
		h := handle
		b.attrs[b.alloc[o]].HandleID = &h
		if _, err := s.Update(ctx, kv.Key, b.encode(), kv.Revision); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGCEmptyBlocks: a block seen empty on two passes is returned to the
// pool, with its affinity; a used one is not.
func TestGCEmptyBlocks(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p", "10.153.0.0/24", blockSize(28))
		createNode(t, s, "n1", nil)
		m := newIPAM(t, s, nil)
		var addrs []Allocation
		for _, h := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"} {
			addrs = append(addrs, alloc(t, m, v4(h, "n1"))[0])
		}
		first, second := addrs[0].Block, addrs[16].Block
		if first == second {
			t.Fatalf("17 addresses in one /28")
		}
		if _, err := m.ReleaseHandle(ctx, "q"); err != nil {
			t.Fatal(err)
		}
		opts := GCOptions{Node: "n1", LiveHandles: live("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p")}
		rep, _ := m.GC(ctx, opts)
		if len(rep.BlocksReleased) != 0 {
			t.Fatalf("first pass released %v", rep.BlocksReleased)
		}
		rep, _ = m.GC(ctx, opts)
		if !slices.Equal(rep.BlocksReleased, []netip.Prefix{second}) {
			t.Fatalf("second pass released %v, want [%s]", rep.BlocksReleased, second)
		}
		nb, _ := m.NodeBlocks(ctx, "n1")
		if len(nb) != 1 || nb[0].CIDR != first {
			t.Errorf("node blocks after GC: %v", nb)
		}
		// The next allocation still works (claims again if needed).
		alloc(t, m, v4("r", "n1"))
		checkClean(t, m, map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true, "f": true, "g": true, "h": true, "i": true, "j": true, "k": true, "l": true, "m": true, "n": true, "o": true, "p": true, "r": true})
	})
}

// TestGCDeletedNode: a deleted node's addresses, blocks and affinities are
// released (its blocks that others borrow from stay, without affinity),
// without Kubernetes.
func TestGCDeletedNode(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		clk := newClock()
		createPool(t, s, "p", "10.154.0.0/26")
		createPool(t, s, "q", "10.155.0.0/24")
		createNode(t, s, "gone", nil)
		createNode(t, s, "stays", nil)
		m := newIPAM(t, s, clk)
		g := alloc(t, m, Request{Handle: "g1", Node: "gone", IPv4: 1, Pools4: []string{"p"}})[0]
		alloc(t, m, Request{Handle: VXLANTunnelHandlePrefix + "gone", Node: "gone", IPv4: 1, Pools4: []string{"q"}})
		createWEP(t, s, "wg", "gone", "g1", g.Addr)
		borrowed := alloc(t, m, Request{Handle: "s1", Node: "stays", IPv4: 1, Pools4: []string{"p"}})[0]
		createWEP(t, s, "ws", "stays", "s1", borrowed.Addr)
		if borrowed.Block != g.Block {
			t.Fatalf("stays did not borrow from gone's block")
		}
		checkClean(t, m, nil)

		deleteNode(t, s, "gone")
		if err := m.ReleaseNode(ctx, "stays"); err == nil || !strings.Contains(err.Error(), "still exists") {
			t.Errorf("ReleaseNode of an existing node: %v", err)
		}
		clk.Advance(time.Hour)
		rep, err := m.GC(ctx, GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.NodesReleased) != 0 {
			t.Fatalf("released node on first sighting: %v", rep)
		}
		clk.Advance(16 * time.Minute)
		rep, err = m.GC(ctx, GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.NodesReleased, []string{"gone"}) {
			t.Fatalf("released nodes %v (report %+v)", rep.NodesReleased, rep)
		}
		for _, k := range ipamKeys(t, s) {
			if strings.Contains(k, "gone") {
				t.Errorf("key %s of the deleted node survived", k)
			}
		}
		info, err := m.Lookup(ctx, borrowed.Addr)
		if err != nil || !info.Allocated || info.Handle != "s1" || info.BlockNode != "" {
			t.Errorf("borrowed address after node release: %+v, %v; want still held by s1 in a block without affinity", info, err)
		}
		if info, _ := m.Lookup(ctx, g.Addr); info.Allocated {
			t.Errorf("%s of the deleted node is still allocated", g.Addr)
		}
		// The stale endpoint of the deleted node is not live: check says
		// nothing about it, and nothing is leaked.
		checkClean(t, m, nil)
	})
}

// TestGCRefusesWithoutNodes: with no Node resource at all, GC frees nothing.
func TestGCRefusesWithoutNodes(t *testing.T) {
	s := newStoreWithPool(t)
	clk := newClock()
	m := newIPAM(t, s, clk)
	alloc(t, m, v4("h", "n1"))
	clk.Advance(time.Hour)
	m.GC(ctxT(t), GCOptions{Grace: time.Minute})
	clk.Advance(time.Hour)
	rep, err := m.GC(ctxT(t), GCOptions{Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Released) != 0 || len(rep.NodesReleased) != 0 || len(rep.Warnings) == 0 {
		t.Fatalf("GC without nodes: %+v; want nothing released and a warning", rep)
	}
}

// TestGCRepairsAffinities: abandoned and dangling affinities go, missing
// ones come back; check reports each before and nothing after.
func TestGCRepairsAffinities(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		clk := newClock()
		createPool(t, s, "p", "10.156.0.0/24")
		createNode(t, s, "n1", nil)
		createNode(t, s, "n2", nil)
		m := newIPAM(t, s, clk)
		a := alloc(t, m, v4("h1", "n1"))[0]
		old := clk.Now().Add(-time.Hour)
		put(t, s, affinityKey("n2", mustPfx("10.156.0.192/26")), affinityValue{State: StatePending, PendingSince: &old})
		put(t, s, affinityKey("n2", a.Block), affinityValue{State: StateConfirmed})
		kv, err := s.Get(ctx, affinityKey("n1", a.Block))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, kv.Key, kv.Revision); err != nil {
			t.Fatal(err)
		}
		r, err := m.Check(ctx, map[string]bool{"h1": true})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[ProblemKind]bool{}
		for _, p := range r.Problems {
			kinds[p.Kind] = true
		}
		for _, k := range []ProblemKind{ProblemStalePending, ProblemDanglingAffinity, ProblemMissingAffinity} {
			if !kinds[k] {
				t.Errorf("check did not report %s: %v", k, r.Problems)
			}
		}
		rep, err := m.GC(ctx, GCOptions{LiveHandles: live("h1")})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.AffinitiesRemoved) != 2 || len(rep.AffinitiesRestored) != 1 {
			t.Errorf("GC removed %v, restored %v", rep.AffinitiesRemoved, rep.AffinitiesRestored)
		}
		checkClean(t, m, map[string]bool{"h1": true})
		if nb, _ := m.NodeBlocks(ctx, "n1"); len(nb) != 1 {
			t.Errorf("n1 blocks after repair: %v", nb)
		}
	})
}

func put(t *testing.T, s datastore.Store, key string, v any) {
	t.Helper()
	if _, err := s.Create(context.Background(), key, mustJSON(v)); err != nil {
		t.Fatal(err)
	}
}

// TestCheckFindsProblems: each kind of inconsistency is reported.
func TestCheckFindsProblems(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p", "10.157.0.0/24")
		createNode(t, s, "n1", nil)
		m := newIPAM(t, s, nil)
		a := alloc(t, m, v4("a", "n1"))[0]
		b := alloc(t, m, v4("b", "n1"))[0]
		alloc(t, m, v4("leak", "n1"))
		createWEP(t, s, "wa", "n1", "a", a.Addr)
		createWEP(t, s, "wb", "n1", "b", b.Addr, a.Addr)           // also lists a's address
		createWEP(t, s, "wc", "n1", "c", mustAddr("10.157.0.200")) // an address IPAM has free
		put(t, s, handleKey("empty"), handleValue{Block: map[string]int{a.Block.String(): 1}})
		put(t, s, blockKey(mustPfx("10.157.0.128/26")), map[string]any{"cidr": "bad"})
		r, err := m.Check(ctx, map[string]bool{"a": true, "b": true, "c": true})
		if err != nil {
			t.Fatal(err)
		}
		want := map[ProblemKind]int{ProblemLeaked: 1, ProblemHeldTwice: 2, ProblemEndpointAddress: 1, ProblemHandleWithoutAllocations: 1, ProblemDamaged: 1}
		got := map[ProblemKind]int{}
		for _, p := range r.Problems {
			got[p.Kind]++
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s: %d problems, want %d (all: %v)", k, got[k], n, r.Problems)
			}
		}
		if r.OK() {
			t.Error("report OK")
		}
	})
}

// TestGCNodePassReadsDoNotGrowWithCluster: what one node's GC pass reads
// from the datastore (round trips and keys returned) is the same in a
// cluster of 2, 8 or 32 nodes, each with blocks and endpoints: the pass
// reads its own affinities and blocks, not the cluster's IPAM tree (the
// agent's live handles and nodes come from its watch cache). The
// cluster-wide pass, which one elected agent runs, does grow.
func TestGCNodePassReadsDoNotGrowWithCluster(t *testing.T) {
	type reads struct{ calls, keys int64 }
	measure := func(t *testing.T, nodes int) (node, cluster reads) {
		s := memstore.New()
		createPool(t, s, "p", "10.160.0.0/16", blockSize(28))
		m := newIPAM(t, s, nil)
		liveNodes, liveHandles := map[string]bool{}, map[string]bool{}
		for i := range nodes {
			n := fmt.Sprintf("node-%d", i)
			createNode(t, s, n, nil)
			liveNodes[n] = true
			for j := range 20 { // two /28 blocks per node
				h := fmt.Sprintf("net.%s-c%d.eth0", n, j)
				a := alloc(t, m, v4(h, n))[0]
				createWEP(t, s, fmt.Sprintf("%s-w%d", n, j), n, h, a.Addr)
				liveHandles[h] = true
			}
		}
		alloc(t, m, v4("leaked-on-node-0", "node-0")) // one leak, inside its grace period
		c := &counting{Store: s}
		cm := newIPAM(t, c, nil)
		opts := GCOptions{
			Node:        "node-0",
			LiveHandles: func(context.Context) (map[string]bool, error) { return liveHandles, nil },
			LiveNodes:   func(context.Context) (map[string]bool, error) { return liveNodes, nil },
			Grace:       time.Hour,
		}
		rep, err := cm.GC(ctxT(t), opts)
		if err != nil || rep.Waiting != 1 || len(rep.Released) != 0 {
			t.Fatalf("node pass: %+v, %v; want 1 waiting, nothing released", rep, err)
		}
		node = reads{c.reads.Load(), c.keys.Load()}
		c.reads.Store(0)
		c.keys.Store(0)
		if _, err := cm.GC(ctxT(t), GCOptions{Grace: time.Hour}); err != nil {
			t.Fatal(err)
		}
		return node, reads{c.reads.Load(), c.keys.Load()}
	}
	var first reads
	for i, n := range []int{2, 8, 32} {
		node, cluster := measure(t, n)
		t.Logf("%2d nodes: node pass %d reads, %d keys; cluster-wide pass %d reads, %d keys", n, node.calls, node.keys, cluster.calls, cluster.keys)
		if i == 0 {
			first = node
			continue
		}
		if node != first {
			t.Errorf("%d nodes: node pass read %d times, %d keys; with 2 nodes %d times, %d keys: it must not grow with the cluster",
				n, node.calls, node.keys, first.calls, first.keys)
		}
	}
}
