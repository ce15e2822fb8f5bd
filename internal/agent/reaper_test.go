package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/agent/endpoint/endpointtest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// fakeDeadKernel answers NetNSGone from a set of removed paths; its link
// events are fed by the test through pass.
type fakeDeadKernel struct {
	mu     sync.Mutex
	gone   map[string]bool
	err    error
	events chan string // link deletes Run sees (nil: none)
}

func (k *fakeDeadKernel) WatchLinkDeletes(ctx context.Context, gone func(string)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-k.events:
			gone(n)
		}
	}
}

func (k *fakeDeadKernel) NetNSGone(path string) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gone[path], k.err
}

// reaperRig is an agent's reaper over the in-memory datastore, real IPAM,
// the fake wirer and a clock the test moves.
type reaperRig struct {
	t      *testing.T
	a      *Agent
	r      *reaper
	wirer  *endpointtest.Fake
	kernel *fakeDeadKernel
	clock  time.Time
}

type rigEndpoint struct {
	w      *api.WorkloadEndpoint
	netns  string
	hostIf string
}

func newReaperRig(t *testing.T) *reaperRig {
	t.Helper()
	store := memstore.New()
	client := datastore.NewClient(store)
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	if _, err := client.Create(ctx, &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "p"}, Spec: api.IPPoolSpec{CIDR: "10.9.0.0/24", BlockSize: 28}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, &api.Node{ObjectMeta: api.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	rig := &reaperRig{t: t, wirer: endpointtest.NewFake(), kernel: &fakeDeadKernel{gone: map[string]bool{}}, clock: time.Unix(1_000_000, 0)}
	rig.a = &Agent{
		cfg: Config{Node: "n1", DeadEndpointGrace: 5 * time.Second, DeadEndpointSweep: 30 * time.Second},
		log: log, store: store, client: client, ipam: ipam.New(store, log), wirer: rig.wirer,
		cache:   newCache(client, []string{"WorkloadEndpoint"}, log),
		m:       newMetrics(),
		pending: pendingEndpoints{m: map[string]*api.WorkloadEndpoint{}},
	}
	rig.r = newReaper(rig.a, rig.kernel)
	rig.r.now = func() time.Time { return rig.clock }
	rig.a.reaper = rig.r
	return rig
}

// attach does what ADD does, through the fakes: address, interface,
// endpoint (in the datastore and the cache).
func (g *reaperRig) attach(cid string) rigEndpoint {
	g.t.Helper()
	ctx := context.Background()
	h := ipam.HandleID("net1", cid, "eth0")
	allocs, err := g.a.ipam.Allocate(ctx, ipam.Request{Handle: h, Node: "n1", IPv4: 1})
	if err != nil {
		g.t.Fatalf("allocate: %v", err)
	}
	addr := netip.PrefixFrom(allocs[0].Addr, 32)
	path := "/var/run/netns/fake-" + cid
	if _, err := g.wirer.Add(ctx, endpoint.Config{ContainerID: cid, IfName: "eth0", NetNS: path, Addrs: []netip.Prefix{addr}, MTU: 1500}); err != nil {
		g.t.Fatalf("wire: %v", err)
	}
	hostIf := endpoint.HostIfName(cid, "eth0")
	w := &api.WorkloadEndpoint{
		ObjectMeta: api.ObjectMeta{Name: "n1-cni-" + cid + "-eth0", Namespace: "default"},
		Spec: api.WorkloadEndpointSpec{Node: "n1", Orchestrator: "cni", Workload: cid, ContainerID: cid, Endpoint: "eth0",
			InterfaceName: hostIf, IPNetworks: []string{addr.String()}, IPAMHandle: h, NetNS: path, Network: "net1"},
	}
	if _, err := g.a.client.Create(ctx, w); err != nil {
		g.t.Fatalf("create endpoint: %v", err)
	}
	g.a.cache.put("WorkloadEndpoint", w)
	return rigEndpoint{w: w, netns: path, hostIf: hostIf}
}

// kill makes the container die without DEL: namespace gone, and with it
// the veth.
func (g *reaperRig) kill(e rigEndpoint) {
	g.wirer.RemoveNetNS(e.netns)
	g.kernel.mu.Lock()
	g.kernel.gone[e.netns] = true
	g.kernel.mu.Unlock()
}

func (g *reaperRig) pass(after time.Duration, gone ...string) {
	g.clock = g.clock.Add(after)
	g.r.pass(context.Background(), gone, false)
}

func (g *reaperRig) sweep(after time.Duration) {
	g.clock = g.clock.Add(after)
	g.r.pass(context.Background(), nil, true)
}

// exists reports whether the endpoint is stored and its handle holds
// addresses.
func (g *reaperRig) exists(e rigEndpoint) (endpoint, addrs bool) {
	g.t.Helper()
	ctx := context.Background()
	_, err := g.a.client.Get(ctx, "WorkloadEndpoint", e.w.Namespace, e.w.Name)
	if err != nil && !errors.Is(err, datastore.ErrNotFound) {
		g.t.Fatal(err)
	}
	held, herr := g.a.ipam.HandleAddrs(ctx, e.w.Spec.IPAMHandle)
	if herr != nil {
		g.t.Fatal(herr)
	}
	return err == nil, len(held) > 0
}

func (g *reaperRig) wantExists(what string, e rigEndpoint, wantEP, wantAddrs bool) {
	g.t.Helper()
	ep, addrs := g.exists(e)
	if ep != wantEP || addrs != wantAddrs {
		g.t.Fatalf("%s: endpoint %s stored %v, addresses held %v; want %v, %v", what, e.w.Name, ep, addrs, wantEP, wantAddrs)
	}
}

func metricValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestReaperRemovesDeadContainer: a container whose veth and namespace
// are gone loses its endpoint and addresses after the grace period, and
// only then; its neighbour keeps everything; a later DEL is a no-op.
func TestReaperRemovesDeadContainer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trigger func(g *reaperRig, e rigEndpoint)
	}{
		{"link event", func(g *reaperRig, e rigEndpoint) { g.pass(0, e.hostIf) }},
		{"sweep", func(g *reaperRig, e rigEndpoint) { g.sweep(0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newReaperRig(t)
			dead, live := g.attach("dead1"), g.attach("live1")
			g.kill(dead)
			tc.trigger(g, dead)
			g.pass(4 * time.Second)
			g.wantExists("within the grace period", dead, true, true)
			g.pass(time.Second)
			g.wantExists("after the grace period", dead, false, false)
			g.wantExists("the neighbour", live, true, true)
			if got := metricValue(t, g.r.reaped); got != 1 {
				t.Errorf("reaped = %v, want 1", got)
			}
			if _, ok := g.a.cache.get("WorkloadEndpoint", dead.w.Namespace, dead.w.Name); ok {
				t.Errorf("reaped endpoint still in the cache")
			}
			// The runtime's late DEL succeeds and changes nothing.
			if err := g.a.removeEndpoint(context.Background(), dead.w.Namespace, dead.w.Name, "dead1", "eth0", dead.netns, dead.w.Spec.IPAMHandle); err != nil {
				t.Fatalf("late DEL: %v", err)
			}
			g.wantExists("the neighbour after the late DEL", live, true, true)
		})
	}
}

// TestReaperKeepsLiveContainerWithoutVeth: a veth deleted while the
// namespace lives is reported, never removed; the report goes when the
// interface is back.
func TestReaperKeepsLiveContainerWithoutVeth(t *testing.T) {
	g := newReaperRig(t)
	e := g.attach("oops1")
	if err := g.wirer.DeleteHostIf(context.Background(), e.hostIf); err != nil {
		t.Fatal(err)
	}
	g.pass(0, e.hostIf)
	for range 3 {
		g.sweep(30 * time.Second)
	}
	g.wantExists("veth deleted, namespace alive", e, true, true)
	if got := metricValue(t, g.r.broken); got != 1 {
		t.Errorf("broken endpoints = %v, want 1", got)
	}
	if got := metricValue(t, g.r.reaped); got != 0 {
		t.Errorf("reaped = %v, want 0", got)
	}
	// The runtime re-adds it: the interface is back, the report goes.
	addr := netip.MustParsePrefix(e.w.Spec.IPNetworks[0])
	if _, err := g.wirer.Add(context.Background(), endpoint.Config{ContainerID: "oops1", IfName: "eth0", NetNS: e.netns, Addrs: []netip.Prefix{addr}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	g.sweep(30 * time.Second)
	if got := metricValue(t, g.r.broken); got != 0 {
		t.Errorf("broken endpoints after repair = %v, want 0", got)
	}
}

// TestReaperSparesWhatItCannotJudge: an endpoint without a recorded
// namespace, or whose namespace cannot be checked, is kept.
func TestReaperSparesWhatItCannotJudge(t *testing.T) {
	g := newReaperRig(t)
	old := g.attach("old1")
	old.w.Spec.NetNS = "" // written by an older agent
	g.a.cache.put("WorkloadEndpoint", old.w)
	unsure := g.attach("unsure1")
	g.kill(old)
	g.kill(unsure)
	g.kernel.mu.Lock()
	g.kernel.err = errors.New("too many open files")
	g.kernel.mu.Unlock()
	g.sweep(0)
	g.sweep(time.Minute)
	g.wantExists("no recorded namespace", old, true, true)
	g.wantExists("namespace cannot be checked", unsure, true, true)
}

// TestReaperNeverRacesAnAdd: an ADD of the same handle running, or run
// since the endpoint was seen dead, or an endpoint changed since it was
// judged, stops the removal; nothing is released.
func TestReaperNeverRacesAnAdd(t *testing.T) {
	t.Run("ADD running", func(t *testing.T) {
		g := newReaperRig(t)
		e := g.attach("re1")
		g.kill(e)
		g.pass(0, e.hostIf)
		done := g.r.holdAdd(e.w.Spec.IPAMHandle)
		g.pass(time.Minute)
		g.wantExists("while an ADD of its handle runs", e, true, true)
		done()
		// The ADD ended after it was seen dead: it is judged from the start.
		g.pass(time.Second)
		g.wantExists("just after that ADD", e, true, true)
		g.pass(5 * time.Second)
		g.pass(5 * time.Second)
		g.wantExists("a grace period after that ADD, still dead", e, false, false)
	})
	t.Run("endpoint rewritten", func(t *testing.T) {
		g := newReaperRig(t)
		e := g.attach("re2")
		g.kill(e)
		g.pass(0, e.hostIf)
		// A re-ADD rewrote the endpoint; the cache has not seen it yet.
		cur, err := g.a.client.Get(context.Background(), "WorkloadEndpoint", e.w.Namespace, e.w.Name)
		if err != nil {
			t.Fatal(err)
		}
		cur.(*api.WorkloadEndpoint).Spec.InterfaceName = "tbyrewritten0"
		if _, err := g.a.client.Update(context.Background(), cur); err != nil {
			t.Fatal(err)
		}
		g.pass(5 * time.Second)
		g.wantExists("endpoint changed since it was judged", e, true, true)
	})
	t.Run("ADD waits for the reaper", func(t *testing.T) {
		g := newReaperRig(t)
		h := "net1.x.eth0"
		release, ok := g.r.holds.tryReap(h, g.clock)
		if !ok {
			t.Fatal("tryReap refused with no ADD")
		}
		entered := make(chan struct{})
		go func() { done := g.r.holdAdd(h); close(entered); done() }()
		select {
		case <-entered:
			t.Fatal("ADD of the handle ran while the reaper held it")
		case <-time.After(50 * time.Millisecond):
		}
		release()
		<-entered
	})
}

// TestReaperInterfaceBack: an interface that comes back within the grace
// period (a re-ADD of the same container) saves the endpoint.
func TestReaperInterfaceBack(t *testing.T) {
	g := newReaperRig(t)
	e := g.attach("back1")
	g.kill(e)
	g.pass(0, e.hostIf)
	g.kernel.mu.Lock()
	delete(g.kernel.gone, e.netns)
	g.kernel.mu.Unlock()
	addr := netip.MustParsePrefix(e.w.Spec.IPNetworks[0])
	if _, err := g.wirer.Add(context.Background(), endpoint.Config{ContainerID: "back1", IfName: "eth0", NetNS: e.netns + "-new", Addrs: []netip.Prefix{addr}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	g.pass(5 * time.Second)
	g.pass(5 * time.Second)
	g.wantExists("interface back", e, true, true)
}

// TestConfigDeadEndpointBounds: the reaper's settings default, and bad
// values are refused naming the flag.
func TestConfigDeadEndpointBounds(t *testing.T) {
	base := Config{Node: "n1", NodeIP: netip.MustParsePrefix("10.0.0.1/24")}
	d := base.WithDefaults()
	if d.DeadEndpointGrace != DefaultDeadEndpointGrace || d.DeadEndpointSweep != DefaultDeadEndpointSweep {
		t.Errorf("defaults: grace %s, sweep %s; want %s, %s", d.DeadEndpointGrace, d.DeadEndpointSweep, DefaultDeadEndpointGrace, DefaultDeadEndpointSweep)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"grace too short", func(c *Config) { c.DeadEndpointGrace = 100 * time.Millisecond }, "dead-endpoint-grace: 100ms"},
		{"grace negative", func(c *Config) { c.DeadEndpointGrace = -time.Second }, "dead-endpoint-grace: -1s"},
		{"sweep too long", func(c *Config) { c.DeadEndpointSweep = 2 * time.Hour }, "dead-endpoint-sweep: 2h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base.WithDefaults()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestReaperRun: Run turns a link event into a removal once the grace has
// passed (real clock, short grace), and returns when its context ends.
func TestReaperRun(t *testing.T) {
	g := newReaperRig(t)
	g.r.now = time.Now
	g.r.grace = 20 * time.Millisecond
	g.kernel.events = make(chan string)
	e := g.attach("run1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.r.Run(ctx) }()
	g.kill(e)
	g.kernel.events <- "eth9" // not a workload interface: ignored
	g.kernel.events <- e.hostIf
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ep, addrs := g.exists(e); !ep && !addrs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead container was not removed within 10 s of its link event")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
