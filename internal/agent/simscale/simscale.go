// Package simscale is the simulated scale run (issue 15 item 6): many
// agents in one process against one embedded etcd, each a real agent
// (agent.NewSimulated: the cache, typed deltas, the dataplane loop and the
// incremental policy engine) whose kernel is an in-memory driver that
// keeps the rulesets it is given. It writes a cluster of endpoints and
// policies, churns endpoints and policies, and reports how long each event
// takes to be programmed on every agent that must program it, CPU and
// memory per agent, and etcd requests per event.
//
// It is a simulation: no packet flows, no nftables, no BGP. What it
// measures is the control plane every agent runs, at a scale one machine
// cannot hold as real hosts.
package simscale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/embedded"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// Config is the size of the simulated cluster and its churn.
type Config struct {
	Agents int // nodes
	// Running is how many of the nodes run an agent (default: all); the
	// others are only their endpoints in the datastore. Per-agent figures
	// are of the running agents.
	Running   int
	Endpoints int // workload endpoints, spread evenly over the nodes
	Policies  int // NetworkPolicies, 5 per app
	Rules     int // ingress rules per policy (default 5)
	// Events is the number of churn events: endpoint adds (measured),
	// endpoint deletes and policy adds, in turn.
	Events int
	// EndpointsOnly churns endpoints only (adds and deletes): no policy
	// adds, so no event needs a full compile.
	EndpointsOnly bool
	// Gap is the time between two churn events (default 20ms).
	Gap time.Duration
	// Settle bounds the wait for every agent to program an event
	// (default 30s).
	Settle time.Duration
	// Dir holds etcd's data and the agents' sockets ("": a temp dir).
	Dir string
	Log *slog.Logger
	// AfterSync, when set, runs once every agent has synced (a heap
	// profile, for example).
	AfterSync func()
}

func (c Config) withDefaults() Config {
	if c.Running == 0 || c.Running > c.Agents {
		c.Running = c.Agents
	}
	if c.Rules == 0 {
		c.Rules = 5
	}
	if c.Gap == 0 {
		c.Gap = 20 * time.Millisecond
	}
	if c.Settle == 0 {
		c.Settle = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Result is what a run measured.
type Result struct {
	Config struct {
		Agents, Running, Endpoints, Policies, Rules, Events int
	}
	// Apps is the number of app labels; each policy selects one app and
	// admits others.
	Apps int
	// ActivePoliciesPerAgent and RulesPerAgent describe an agent's table
	// (mean over the agents).
	RulesPerAgent  float64
	ChainsPerAgent float64
	SetupSeconds   float64 // writing the cluster and every agent's first sync
	// Endpoint add → the address in the sets of every agent that programs
	// it: per (agent, event) and per event (the slowest agent).
	AddP50Ms, AddP99Ms, AddAllP50Ms, AddAllP99Ms float64
	// Endpoint delete → the address gone from the sets of every agent
	// that held it: per (agent, event) and per event. The endpoint's own
	// host keeps a deleted local endpoint for 300 ms by design (the
	// agent's tombstone), so the per-event figure is at least that.
	DelP50Ms, DelP99Ms, DelAllP50Ms, DelAllP99Ms float64
	// AgentsPerAdd is how many agents programmed an endpoint add (mean).
	AgentsPerAdd float64
	// CPU and memory per agent: process CPU during the churn divided by
	// the agents, heap in use by the agents (after their first sync, less
	// the heap before they started) divided by the agents.
	CPUPerAgentMsPerEvent float64
	HeapPerAgentMiB       float64
	RSSMiB                float64 // the whole process, etcd included
	// etcd requests per churn event sent by the agents, net of their
	// background rate measured in an idle window of the same length
	// (heartbeats, GC), and that rate; WriterRequestsPerEvent are the
	// churn's own writes (one per event).
	EtcdRequestsPerEvent   float64
	EtcdIdleRequestsPerS   float64
	WriterRequestsPerEvent float64
	// FullCompileEqual: for a sample of agents, the last ruleset each
	// programmed equals a full compile of the final datastore state.
	FullCompileChecked int
	// Syncs by path (incremental or full), summed over the agents.
	IncrementalSyncs, FullSyncs int64
}

// counting counts the requests an agent sends to etcd.
type counting struct {
	datastore.Store
	n *atomic.Int64
}

func (c counting) Get(ctx context.Context, k string) (*datastore.KV, error) {
	c.n.Add(1)
	return c.Store.Get(ctx, k)
}
func (c counting) List(ctx context.Context, p string) ([]*datastore.KV, int64, error) {
	c.n.Add(1)
	return c.Store.List(ctx, p)
}
func (c counting) Create(ctx context.Context, k string, v []byte) (int64, error) {
	c.n.Add(1)
	return c.Store.Create(ctx, k, v)
}
func (c counting) Update(ctx context.Context, k string, v []byte, rev int64) (int64, error) {
	c.n.Add(1)
	return c.Store.Update(ctx, k, v, rev)
}
func (c counting) Delete(ctx context.Context, k string, rev int64) error {
	c.n.Add(1)
	return c.Store.Delete(ctx, k, rev)
}
func (c counting) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	c.n.Add(1)
	return c.Store.Txn(ctx, ops)
}
func (c counting) Watch(ctx context.Context, p string, rev int64) <-chan datastore.Event {
	c.n.Add(1)
	return c.Store.Watch(ctx, p, rev)
}

// probes are the addresses of churned endpoints, and when each agent
// first saw each appear in (or leave) its sets.
type probes struct {
	mu    sync.Mutex
	watch map[netip.Addr]*probe
}

type probe struct {
	start time.Time
	del   bool                 // waiting for it to leave
	seen  map[string]time.Time // agent → when
}

// driver is a simulated agent's kernel: it keeps the last ruleset and,
// for every set that changed (the engine shares unchanged sets, so a
// pointer compare finds them), notes the probes that appeared or left.
type driver struct {
	node   string
	p      *probes
	mu     sync.Mutex
	last   *policy.Ruleset
	synced chan struct{}
	once   sync.Once
}

func (d *driver) Apply(_ context.Context, rs *policy.Ruleset) error {
	now := time.Now()
	d.mu.Lock()
	prev := d.last
	d.last = rs
	d.mu.Unlock()
	d.once.Do(func() { close(d.synced) })
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	for addr, pr := range d.p.watch {
		if _, ok := pr.seen[d.node]; ok {
			continue
		}
		if holdsAny(rs, prev, addr, pr.del) != pr.del {
			pr.seen[d.node] = now
		}
	}
	return nil
}

// holdsAny reports whether an address set of rs (s4-/s6- selector sets,
// u4-/u6- unions) holds addr as a single address. For an add (del false)
// only the sets that changed since prev are read (an unchanged set did
// not hold it at the last Apply either, or the probe would be seen); for
// a delete every set is.
func holdsAny(rs, prev *policy.Ruleset, addr netip.Addr, del bool) bool {
	key := policy.Element{Prefix: netip.PrefixFrom(addr, addr.BitLen())}
	for _, s := range rs.Sets {
		if len(s.Name) < 3 || s.Name[2] != '-' || s.Name[0] != 's' && s.Name[0] != 'u' {
			continue
		}
		if !del && prev != nil && prev.Set(s.Name) == s {
			continue
		}
		if _, ok := slices.BinarySearchFunc(s.Elements, key, policy.Element.Compare); ok {
			return true
		}
	}
	return false
}

func (d *driver) FlushConntrack([]netip.Addr) error { return nil }
func (d *driver) Current() bool                     { return true }

func (d *driver) ruleset() *policy.Ruleset {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// cluster layout: endpoint i is on node i mod Agents with app
// (i/Agents + 31i) mod apps, so a node hosts endpoints of many apps and an
// app spreads over many nodes.
func appOf(i, agents, apps int) int { return (i/agents + 31*i) % apps }

func nodeName(n int) string { return fmt.Sprintf("sim-%03d", n) }

func endpointAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(64 + i>>16), byte(i >> 8), byte(i)})
}

func wep(i, node, app int, addr netip.Addr) *api.WorkloadEndpoint {
	w := &api.WorkloadEndpoint{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("ep-%06d", i), Namespace: "default",
		Labels: map[string]string{"app": fmt.Sprintf("app-%04d", app)}}}
	w.Spec.Node = nodeName(node)
	w.Spec.InterfaceName = fmt.Sprintf("tbys%07d", i)
	w.Spec.IPNetworks = []string{addr.String() + "/32"}
	w.Spec.Profiles = []string{"sim"}
	w.Spec.ContainerID = fmt.Sprintf("c%06d", i)
	w.Spec.NetNS = "/var/run/netns/sim"
	return w
}

func networkPolicy(p, apps, rules int) *api.NetworkPolicy {
	var in []api.Rule
	tcp := api.ProtocolTCP
	for j := range rules {
		in = append(in, api.Rule{Action: "Allow", Protocol: &tcp,
			Source:      api.EntityRule{Selector: fmt.Sprintf("app == 'app-%04d'", (p*13+j+1)%apps)},
			Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(8000 + j))}}})
	}
	order := float64(p % 100)
	return &api.NetworkPolicy{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("pol-%05d", p), Namespace: "default"},
		Spec: api.NetworkPolicySpec{Order: &order, Selector: fmt.Sprintf("app == 'app-%04d'", p%apps), Types: []string{"Ingress"}, Ingress: in}}
}

// Run runs the simulation.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Agents < 1 || cfg.Endpoints < cfg.Agents || cfg.Policies < 1 || cfg.Events < 3 {
		return nil, fmt.Errorf("simscale: need agents ≥ 1, endpoints ≥ agents, policies ≥ 1, events ≥ 3 (have %d, %d, %d, %d)",
			cfg.Agents, cfg.Endpoints, cfg.Policies, cfg.Events)
	}
	if cfg.Endpoints+cfg.Events > 1<<20 {
		return nil, fmt.Errorf("simscale: endpoints + events %d: at most %d", cfg.Endpoints+cfg.Events, 1<<20)
	}
	dir := cfg.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	} else {
		d, err := os.MkdirTemp("", "tabby-sim-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	res := &Result{}
	res.Config.Agents, res.Config.Running, res.Config.Endpoints, res.Config.Policies, res.Config.Rules, res.Config.Events = cfg.Agents, cfg.Running, cfg.Endpoints, cfg.Policies, cfg.Rules, cfg.Events
	apps := max(1, cfg.Endpoints/20)
	res.Apps = apps
	setup := time.Now()

	warn := slog.LevelError
	srv, err := embedded.New(embedded.Config{Name: "sim", DataDir: filepath.Join(dir, "etcd"),
		ListenClient: "unix://" + filepath.Join(dir, "etcd.sock"), Logger: cfg.Log, EtcdLogLevel: &warn,
		QuotaBackendBytes: 8 << 30})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	defer srv.Stop()
	ecfg := etcd.Config{Endpoints: []string{srv.ClientURL()}, DialTimeout: 10 * time.Second}
	admin, err := etcd.New(ecfg)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	var writes atomic.Int64
	client := datastore.NewClient(counting{admin, &writes})

	// The cluster: a profile, the endpoints, the policies.
	objs := []api.Resource{&api.Profile{ObjectMeta: api.ObjectMeta{Name: "sim"}}}
	for i := range cfg.Endpoints {
		objs = append(objs, wep(i, i%cfg.Agents, appOf(i, cfg.Agents, apps), endpointAddr(i)))
	}
	for p := range cfg.Policies {
		objs = append(objs, networkPolicy(p, apps, cfg.Rules))
	}
	if err := createAll(ctx, client, objs); err != nil {
		return nil, err
	}

	// The agents.
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	pr := &probes{watch: map[netip.Addr]*probe{}}
	var reqs atomic.Int64
	drivers := make([]*driver, cfg.Running)
	agents := make([]*agent.Agent, cfg.Running)
	actx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	errc := make(chan error, cfg.Running)
	for n := range cfg.Running {
		st, err := etcd.New(ecfg)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		drivers[n] = &driver{node: nodeName(n), p: pr, synced: make(chan struct{})}
		ip := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(n >> 8), byte(n)}), 16)
		a, err := agent.NewSimulated(nodeName(n), ip, filepath.Join(dir, fmt.Sprintf("a%d.sock", n)), counting{st, &reqs}, drivers[n], cfg.Log.With("node", nodeName(n)))
		if err != nil {
			return nil, err
		}
		agents[n] = a
		wg.Go(func() {
			if err := a.Run(actx); err != nil && actx.Err() == nil {
				errc <- fmt.Errorf("agent %s: %w", nodeName(n), err)
			}
		})
		// Start them a few at a time, as a cluster's hosts come up: the
		// first syncs of 200 agents at once would only measure the
		// machine's two cores.
		if n%8 == 7 {
			if err := waitSynced(ctx, drivers[n-7:n+1], errc); err != nil {
				return nil, err
			}
		}
	}
	if err := waitSynced(ctx, drivers, errc); err != nil {
		return nil, err
	}
	res.SetupSeconds = time.Since(setup).Seconds()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	res.HeapPerAgentMiB = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(cfg.Running) / (1 << 20)
	if cfg.AfterSync != nil {
		cfg.AfterSync()
	}
	for _, d := range drivers {
		rs := d.ruleset()
		res.ChainsPerAgent += float64(len(rs.Chains))
		for _, c := range rs.Chains {
			res.RulesPerAgent += float64(len(c.Rules))
		}
	}
	res.ChainsPerAgent /= float64(cfg.Running)
	res.RulesPerAgent /= float64(cfg.Running)

	// Idle window: the background request rate (heartbeats, GC).
	window := time.Duration(cfg.Events) * cfg.Gap
	r0 := reqs.Load()
	time.Sleep(window)
	idle := reqs.Load() - r0
	res.EtcdIdleRequestsPerS = float64(idle) / window.Seconds()

	// Which agents must program an endpoint of app b: those hosting an
	// endpoint of an app whose policies admit b.
	hosts := make([]map[int]int, apps) // app → node → endpoints of it there
	for a := range hosts {
		hosts[a] = map[int]int{}
	}
	for i := range cfg.Endpoints {
		hosts[appOf(i, cfg.Agents, apps)][i%cfg.Agents]++
	}
	admits := make([]map[int]bool, apps) // app b → apps whose policies admit it
	for b := range admits {
		admits[b] = map[int]bool{}
	}
	addPolicy := func(p int) {
		for j := range cfg.Rules {
			admits[(p*13+j+1)%apps][p%apps] = true
		}
	}
	for p := range cfg.Policies {
		addPolicy(p)
	}
	expected := func(app int) map[string]bool {
		out := map[string]bool{}
		for a := range admits[app] {
			for n, c := range hosts[a] {
				if c > 0 && n < cfg.Running {
					out[nodeName(n)] = true
				}
			}
		}
		return out
	}

	// Churn: add an endpoint (measured), delete the one added two events
	// before, add a policy, in turn.
	cpu0 := cpuTime()
	r0 = reqs.Load()
	w0 := writes.Load()
	type event struct {
		addr   netip.Addr
		del    bool
		expect map[string]bool
	}
	var events []event
	var added []*api.WorkloadEndpoint
	var addedApp [][2]int // app, node of each added endpoint
	churnStart := time.Now()
	for e := range cfg.Events {
		switch e % 3 {
		case 0:
			i := cfg.Endpoints + e
			addr := endpointAddr(i)
			app, node := (e*17)%apps, (e*7)%cfg.Agents
			w := wep(i, node, app, addr)
			ev := event{addr: addr, expect: expected(app)}
			pr.start(addr, false)
			if _, err := client.Create(ctx, w); err != nil {
				return nil, fmt.Errorf("churn: %w", err)
			}
			hosts[app][node]++
			events = append(events, ev)
			added = append(added, w)
			addedApp = append(addedApp, [2]int{app, node})
		case 1:
			if len(added) < 2 {
				break
			}
			w, an := added[len(added)-2], addedApp[len(added)-2]
			var ev event
			for _, x := range events {
				if !x.del && x.addr.String()+"/32" == w.Spec.IPNetworks[0] {
					ev = x
				}
			}
			// Its add must be programmed first: the delete is measured
			// on the agents that programmed it.
			if err := pr.wait(ctx, ev.addr, ev.expect, cfg.Settle); err != nil {
				return nil, err
			}
			res.noteAdd(pr.take(ev.addr))
			pr.start(ev.addr, true)
			if _, err := client.Delete(ctx, "WorkloadEndpoint", "default", w.Name, ""); err != nil {
				return nil, fmt.Errorf("churn: %w", err)
			}
			events = append(events, event{addr: ev.addr, del: true, expect: ev.expect})
			hosts[an[0]][an[1]]--
		case 2:
			if cfg.EndpointsOnly {
				break
			}
			p := cfg.Policies + e
			if _, err := client.Create(ctx, networkPolicy(p, apps, cfg.Rules)); err != nil {
				return nil, fmt.Errorf("churn: %w", err)
			}
			addPolicy(p)
		}
		select {
		case <-time.After(cfg.Gap):
		case err := <-errc:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for _, ev := range events {
		if !pr.pending(ev.addr, ev.del) {
			continue
		}
		if err := pr.wait(ctx, ev.addr, ev.expect, cfg.Settle); err != nil {
			return nil, err
		}
		if ev.del {
			res.noteDel(pr.take(ev.addr))
		} else {
			res.noteAdd(pr.take(ev.addr))
		}
	}
	churn := time.Since(churnStart)
	res.CPUPerAgentMsPerEvent = (cpuTime() - cpu0).Seconds() * 1000 / float64(cfg.Running) / float64(cfg.Events)
	res.EtcdRequestsPerEvent = (float64(reqs.Load()-r0) - res.EtcdIdleRequestsPerS*churn.Seconds()) / float64(cfg.Events)
	res.WriterRequestsPerEvent = float64(writes.Load()-w0) / float64(cfg.Events)
	res.RSSMiB = rssMiB()
	res.finish()

	// The last ruleset of a sample of agents is a full compile of the
	// final state, as the agent itself would build it from its cache.
	// The agents may still be compiling the last policies: compare until
	// equal, within Settle.
	for _, n := range []int{0, cfg.Running / 2, cfg.Running - 1} {
		deadline := time.Now().Add(cfg.Settle)
		for {
			err := checkFull(ctx, client, nodeName(n), drivers[n].ruleset())
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, err
			}
			time.Sleep(200 * time.Millisecond)
		}
		res.FullCompileChecked++
	}
	for _, a := range agents {
		inc, full := a.SyncCounts()
		res.IncrementalSyncs += inc
		res.FullSyncs += full
	}
	return res, nil
}

// start begins watching addr: for it to appear in (or, del, leave) the
// sets of agents.
func (p *probes) start(addr netip.Addr, del bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watch[addr] = &probe{start: time.Now(), del: del, seen: map[string]time.Time{}}
}

func (p *probes) pending(addr netip.Addr, del bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.watch[addr]
	return pr != nil && pr.del == del
}

// wait waits until every expected agent has seen addr's change.
func (p *probes) wait(ctx context.Context, addr netip.Addr, expect map[string]bool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		p.mu.Lock()
		pr := p.watch[addr]
		var missing []string
		for n := range expect {
			if _, ok := pr.seen[n]; !ok {
				missing = append(missing, n)
			}
		}
		p.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			what := "appear in"
			if pr.del {
				what = "leave"
			}
			return fmt.Errorf("simscale: %s did not %s the sets of %d agents within %s (first: %s)", addr, what, len(missing), limit, missing[0])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// take ends watching addr and returns each agent's latency.
func (p *probes) take(addr netip.Addr) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.watch[addr]
	delete(p.watch, addr)
	var out []time.Duration
	for _, at := range pr.seen {
		out = append(out, at.Sub(pr.start))
	}
	return out
}

var (
	addLat, addAll, delLat, delAll []time.Duration
	latMu                          sync.Mutex
)

func (r *Result) noteAdd(lat []time.Duration) {
	latMu.Lock()
	defer latMu.Unlock()
	addLat = append(addLat, lat...)
	if len(lat) > 0 {
		addAll = append(addAll, slices.Max(lat))
	}
	r.AgentsPerAdd += float64(len(lat))
}

func (r *Result) noteDel(lat []time.Duration) {
	latMu.Lock()
	defer latMu.Unlock()
	for _, l := range lat {
		if l > 0 { // agents that never held it are marked at zero
			delLat = append(delLat, l)
		}
	}
	if len(lat) > 0 {
		delAll = append(delAll, slices.Max(lat))
	}
}

func (r *Result) finish() {
	latMu.Lock()
	defer latMu.Unlock()
	if len(addAll) > 0 {
		r.AgentsPerAdd /= float64(len(addAll))
	}
	r.AddP50Ms, r.AddP99Ms = pct(addLat, 50), pct(addLat, 99)
	r.AddAllP50Ms, r.AddAllP99Ms = pct(addAll, 50), pct(addAll, 99)
	r.DelP50Ms, r.DelP99Ms = pct(delLat, 50), pct(delLat, 99)
	r.DelAllP50Ms, r.DelAllP99Ms = pct(delAll, 50), pct(delAll, 99)
	addLat, addAll, delLat, delAll = nil, nil, nil, nil
}

func pct(ds []time.Duration, q int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*q + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

// checkFull compiles the datastore's final state for node and compares
// it with what the agent programmed last.
func checkFull(ctx context.Context, c *datastore.Client, node string, got *policy.Ruleset) error {
	s := &policy.State{Node: node}
	if err := listInto(ctx, c, "WorkloadEndpoint", &s.Endpoints); err != nil {
		return err
	}
	if err := listInto(ctx, c, "NetworkPolicy", &s.Policies); err != nil {
		return err
	}
	if err := listInto(ctx, c, "Profile", &s.Profiles); err != nil {
		return err
	}
	rs, err := policy.Compile(s)
	if err != nil {
		return err
	}
	want := policy.Flatten(rs)
	g, w := *got, *want
	g.Warnings, w.Warnings = nil, nil
	if g.Render() != w.Render() {
		return fmt.Errorf("simscale: agent %s programmed a ruleset that differs from a full compile of the final state", node)
	}
	return nil
}

func listInto[T api.Resource](ctx context.Context, c *datastore.Client, kind string, out *[]T) error {
	rs, _, err := c.List(ctx, kind, "")
	if err != nil {
		return err
	}
	for _, r := range rs {
		if t, ok := r.(T); ok {
			*out = append(*out, t)
		}
	}
	return nil
}

func waitSynced(ctx context.Context, ds []*driver, errc chan error) error {
	for _, d := range ds {
		select {
		case <-d.synced:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Minute):
			return errors.New("simscale: an agent did not sync within 5 minutes")
		}
	}
	return nil
}

// createAll writes objs with a few writers in parallel.
func createAll(ctx context.Context, c *datastore.Client, objs []api.Resource) error {
	ch := make(chan api.Resource)
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	for range 16 {
		wg.Go(func() {
			for o := range ch {
				if _, err := c.Create(ctx, o); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, o := range objs {
		ch <- o
	}
	close(ch)
	wg.Wait()
	return first
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		var kb int
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			return float64(kb) / 1024
		}
	}
	return 0
}
