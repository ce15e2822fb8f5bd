package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// gcAgent is one agent's GC, on its own connection to the datastore.
type gcAgent struct {
	name     string
	store    datastore.Store
	gc       *ipamGC
	el       Elector
	cluster  atomic.Int64 // cluster-wide passes run
	node     atomic.Int64 // node passes run
	cancel   context.CancelFunc
	finished chan struct{}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startGCAgents runs one ipamGC per name, each electing with newElector.
func startGCAgents(t *testing.T, connect func() datastore.Store, newElector func(s datastore.Store, name string) Elector, names ...string) []*gcAgent {
	var out []*gcAgent
	for _, n := range names {
		s := connect()
		m := ipam.New(s, etcdtest.Logger(t))
		g := &gcAgent{name: n, store: s, el: newElector(s, n), finished: make(chan struct{})}
		client := datastore.NewClient(s)
		g.gc = &ipamGC{
			node: n, ipam: m, elector: g.el, interval: 20 * time.Millisecond, grace: time.Millisecond,
			log: etcdtest.Logger(t).With("agent", n),
			live: func() (map[string]bool, map[string]bool) {
				nodes := map[string]bool{}
				rs, _, _ := client.List(context.Background(), "Node", "")
				for _, r := range rs {
					nodes[r.GetObjectMeta().Name] = true
				}
				// The container on node gone lives as long as its node:
				// with a 1 ms grace it would otherwise be released as a
				// leak (and its block with it) while the test checks
				// that the node's block survives.
				return map[string]bool{"net.gone-c1.eth0": nodes["gone"]}, nodes
			},
			done: func(scope string, _ ipam.GCReport, _ error) {
				if scope == "cluster" {
					g.cluster.Add(1)
				} else {
					g.node.Add(1)
				}
			},
		}
		ctx, cancel := context.WithCancel(context.Background())
		g.cancel = cancel
		go func() { defer close(g.finished); _ = g.gc.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-g.finished })
		out = append(out, g)
	}
	return out
}

// leaders lists the agents that lead now.
func leaders(gs []*gcAgent) []*gcAgent {
	var out []*gcAgent
	for _, g := range gs {
		if g.el.Leader() {
			out = append(out, g)
		}
	}
	return out
}

// testGCElection: of three agents exactly one runs the cluster-wide GC;
// when it dies another takes over, and a node deleted after that still
// has its block freed.
func testGCElection(t *testing.T, connect func() datastore.Store, newElector func(datastore.Store, string) Elector, kill func(*gcAgent)) {
	ctx := context.Background()
	admin := connect()
	c := datastore.NewClient(admin)
	mustCreate := func(r api.Resource) {
		t.Helper()
		if _, err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(&api.IPPool{ObjectMeta: api.ObjectMeta{Name: "p"}, Spec: api.IPPoolSpec{CIDR: "10.170.0.0/16"}})
	for _, n := range []string{"n1", "n2", "n3", "gone"} {
		mustCreate(&api.Node{ObjectMeta: api.ObjectMeta{Name: n}})
	}
	m := ipam.New(admin, etcdtest.Logger(t))
	as, err := m.Allocate(ctx, ipam.Request{Handle: "net.gone-c1.eth0", Node: "gone", IPv4: 1})
	if err != nil {
		t.Fatal(err)
	}

	gs := startGCAgents(t, connect, newElector, "n1", "n2", "n3")
	// Nobody ever sees two leaders at once.
	var most atomic.Int32
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for sctx.Err() == nil {
			if n := int32(len(leaders(gs))); n > most.Load() {
				most.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	})
	defer func() { stop(); wg.Wait() }()

	waitFor(t, "one leader running cluster-wide passes", func() bool {
		ls := leaders(gs)
		return len(ls) == 1 && ls[0].cluster.Load() >= 2
	})
	old := leaders(gs)[0]
	var rest []*gcAgent
	for _, g := range gs {
		if g != old {
			rest = append(rest, g)
		}
	}
	waitFor(t, "the others to run node passes", func() bool { return rest[0].node.Load() >= 2 && rest[1].node.Load() >= 2 })
	for _, g := range rest {
		if n := g.cluster.Load(); n != 0 {
			t.Errorf("%s ran %d cluster-wide passes while %s led", g.name, n, old.name)
		}
	}
	if blocks, _ := m.NodeBlocks(ctx, "gone"); len(blocks) != 1 {
		t.Fatalf("node gone lost its block while it existed: %v", blocks)
	}

	kill(old)
	waitFor(t, "another agent to lead and run cluster-wide passes", func() bool {
		ls := leaders(rest)
		return len(ls) == 1 && ls[0].cluster.Load() >= 1
	})
	next := leaders(rest)[0]
	t.Logf("leader %s killed; %s took over", old.name, next.name)
	if _, err := c.Delete(ctx, "Node", "", "gone", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted node's block and address to be freed", func() bool {
		blocks, err1 := m.NodeBlocks(ctx, "gone")
		addrs, err2 := m.HandleAddrs(ctx, "net.gone-c1.eth0")
		return err1 == nil && err2 == nil && len(blocks) == 0 && len(addrs) == 0
	})
	if l, err := m.Lookup(ctx, as[0].Addr); err != nil || l.Allocated {
		t.Errorf("lookup %s after the node was released: %+v, %v; want free", as[0].Addr, l, err)
	}
	if n := most.Load(); n > 1 {
		t.Errorf("%d agents led at once; want at most 1", n)
	}
}

// TestGCElectionEtcd: the real election (etcd leases); the leader is
// killed as a crash would: its connection closes, nothing is handed over,
// and its lease runs out.
func TestGCElectionEtcd(t *testing.T) {
	_, cfg := etcdtest.NewServer(t)
	connect := func() datastore.Store {
		s, err := etcd.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	newElector := func(s datastore.Store, name string) Elector {
		return etcd.NewElector(s.(*etcd.Store), "ipam-gc-test", name, 2*time.Second, etcdtest.Logger(t))
	}
	testGCElection(t, connect, newElector, func(g *gcAgent) { _ = g.store.Close() })
}

// TestGCElectionMemstore: the in-process election; the leader stops.
func TestGCElectionMemstore(t *testing.T) {
	s := memstore.New()
	connect := func() datastore.Store { return s }
	newElector := func(s datastore.Store, name string) Elector {
		return memstore.NewElector(s.(*memstore.Store), "ipam-gc-test")
	}
	testGCElection(t, connect, newElector, func(g *gcAgent) { g.cancel(); <-g.finished })
}
