package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// countingDataplane counts syncs and says whether the kernel is current.
type countingDataplane struct {
	syncs   atomic.Int64
	current atomic.Bool
}

func (d *countingDataplane) Sync(context.Context, *View) error          { d.syncs.Add(1); return nil }
func (d *countingDataplane) EndpointGone(context.Context, []netip.Addr) {}
func (d *countingDataplane) Current() bool                              { return d.current.Load() }

// TestPeriodicResync: the periodic resync compiles and programs again only
// when something changed — the cache, the pending endpoints, or the kernel
// (someone touched the table) — and skips otherwise.
func TestPeriodicResync(t *testing.T) {
	dp := &countingDataplane{}
	a := &Agent{
		cfg:      Config{Node: "n1", ResyncInterval: 5 * time.Millisecond},
		log:      slog.New(slog.DiscardHandler),
		dp:       dp,
		cache:    newCache(datastore.NewClient(memstore.New()), []string{"WorkloadEndpoint"}, slog.New(slog.DiscardHandler)),
		m:        newMetrics(),
		syncReqs: make(chan chan error, 8),
		pending:  pendingEndpoints{m: map[string]*api.WorkloadEndpoint{}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.dataplaneLoop(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitSyncs := func(what string, n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for dp.syncs.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d syncs, want %d", what, dp.syncs.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	skipped := func() float64 {
		var m dto.Metric
		if err := a.m.syncSkipped.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	waitSkips := func(n float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for skipped() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%v resyncs skipped, want %v", skipped(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// The first resync always runs; the kernel is not current yet.
	waitSyncs("first resync", 1)
	waitSyncs("resync while the kernel is not current", 2)

	// Nothing changes and the kernel is current: resyncs are skipped.
	dp.current.Store(true)
	waitSkips(1)
	before := dp.syncs.Load()
	waitSkips(21)
	if got := dp.syncs.Load(); got != before {
		t.Fatalf("%d syncs while nothing changed, want none", got-before)
	}

	// A datastore change, a pending endpoint and a touched kernel each
	// bring a sync.
	a.cache.put("WorkloadEndpoint", wep("a", "10.0.0.1/32"))
	waitSyncs("after a datastore change", before+1)
	a.pending.add(wep("b", "10.0.0.2/32"))
	waitSyncs("after a pending endpoint", before+2)
	dp.current.Store(false)
	waitSyncs("after the kernel was touched", before+4)
}

// TestHeartbeatIsQuiet: a Node update that only moves its status (the
// heartbeat) is stored but does not wake the dataplane; any other change
// does.
func TestHeartbeatIsQuiet(t *testing.T) {
	c := newCache(datastore.NewClient(memstore.New()), []string{"Node"}, slog.New(slog.DiscardHandler))
	c.objs["Node"] = map[string]api.Resource{}
	node := func(rv, beat, addr string) *api.Node {
		return &api.Node{ObjectMeta: api.ObjectMeta{Name: "h2", ResourceVersion: rv},
			Spec:   api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: addr}},
			Status: api.NodeStatus{LastHeartbeat: beat}}
	}
	c.put("Node", node("1", "t1", "10.0.0.2/24"))
	<-c.changed
	v := c.Version()
	c.put("Node", node("2", "t2", "10.0.0.2/24"))
	if c.Version() != v || len(c.changed) != 0 {
		t.Errorf("a heartbeat bumped the cache version (%d → %d) or signalled", v, c.Version())
	}
	if got := c.objs["Node"]["/h2"].(*api.Node).Status.LastHeartbeat; got != "t2" {
		t.Errorf("stored heartbeat %q, want the new one t2", got)
	}
	c.put("Node", node("3", "t3", "10.0.0.9/24"))
	if c.Version() == v || len(c.changed) != 1 {
		t.Errorf("a changed BGP address did not bump the version (%d) or signal", c.Version())
	}
}
