package suite

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/bench/internal/stats"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
)

// scaleSizes are the lab sizes of the scale run.
func scaleSizes(env *harness.Env) []int { return harness.Pick(env, []int{5, 10, 20}, []int{3, 5}) }

func scaleMetrics() []report.Metric {
	var ms []report.Metric
	for _, m := range []report.Metric{
		{Key: "rss", Label: "agent memory (RSS)", Unit: "MiB", LowerIsBetter: true},
		{Key: "cpu", Label: "agent CPU, idle", Unit: "% of a core", LowerIsBetter: true},
		{Key: "cpuset", Label: "agent CPU, setup", Unit: "CPU s", LowerIsBetter: true},
		{Key: "resync", Label: "restarted agent → policy resynced", Unit: "s", LowerIsBetter: true},
		{Key: "reroute", Label: "restarted agent → BGP sessions back", Unit: "s", LowerIsBetter: true},
		{Key: "program", Label: "policies written → programmed on all hosts", Unit: "s", LowerIsBetter: true},
		{Key: "addrate", Label: "containers started", Unit: "1/s"},
		{Key: "db", Label: "datastore size", Unit: "MiB", LowerIsBetter: true},
		{Key: "keys", Label: "datastore keys", LowerIsBetter: true},
	} {
		for _, n := range []int{3, 5, 10, 20} {
			c := m
			c.Key = fmt.Sprintf("%s-%d", m.Key, n)
			c.Label = fmt.Sprintf("%s, %d hosts", m.Label, n)
			ms = append(ms, c)
		}
	}
	return ms
}

// Propagation is filled by the scale run (same labs).
var Propagation = harness.Benchmark{
	ID:    "propagation",
	Title: "Propagation: policy, endpoint sets and routes on every host",
	What: `A lab of 20 hosts (quick mode: 5), one container on each, all selected by a policy whose source
selector is role == 'probe'. **Policy apply → enforced**: a NetworkPolicy selecting every container is written; done when
its chain is in the nftables table of every host. **Endpoint add → set updated**: a WorkloadEndpoint
labelled role=probe is written (as an agent's ADD writes it); done when its address is in the
selector set of an existing policy (source role == 'probe') on every host. **Route convergence**:
a host claims a new /26 block of a fresh IPPool (through internal/ipam, as its agent would for a
container; timed from the start of that call, since the claim commits inside it); done when every
other host has a kernel route to the block (learned over BGP). Each
sample is the time from the datastore commit to the *last* host; hosts are read over netlink every
5 ms (nftables and routes), without exec.`,
	Baseline: `**direct push**: the same kernel change pushed by hand from one place to every host at once —
` + "`nft -f`" + ` adding a chain and rule, ` + "`nft add element`" + `, ` + "`ip route add`" + ` (exec'd in every host namespace in
parallel), until the last returns. It is the floor for "programme N hosts" without a datastore, watch or BGP
(machine baselines B5/B6: ~4.5 ms per nft element add, 2.3 ms per ip route add).`,
	Method: `Every round takes several samples of each kind for Tabby and for the push (order
alternating); p50/p99 per round, median (min–max) over rounds. All agents share this machine's
cores, so with 20 hosts every change is computed 20 times on the same 2 CPUs: propagation on real
hosts, each with its own CPU, is faster than here.`,
	Needs:  []string{"ip", "nft"},
	Budget: 5 * time.Minute, QuickBudget: 60 * time.Second,
	Run:     runPropagation,
	Systems: []report.System{{Key: report.Tabby, Label: "Tabby"}, {Key: "push", Label: "direct push", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "policy-p50", Label: "policy apply → enforced, p50", Unit: "ms", LowerIsBetter: true},
		{Key: "policy-p99", Label: "policy apply → enforced, p99", Unit: "ms", LowerIsBetter: true},
		{Key: "ep-p50", Label: "endpoint add → set updated, p50", Unit: "ms", LowerIsBetter: true},
		{Key: "ep-p99", Label: "endpoint add → set updated, p99", Unit: "ms", LowerIsBetter: true},
		{Key: "route-p50", Label: "block claim → route on all hosts, p50", Unit: "ms", LowerIsBetter: true},
		{Key: "route-p99", Label: "block claim → route on all hosts, p99", Unit: "ms", LowerIsBetter: true},
	},
}

// Scale is the scale run: labs of 5, 10 and 20 hosts with 100 containers
// per host and 1,000 policies.
var Scale = harness.Benchmark{
	ID:    "scale",
	Title: "Scale run: 20 hosts, 2,000 containers, 1,000 policies",
	What: `A lab (internal/lab: master with the datastore, hosts each running ` + "`tabby agent`" + `, BGP full mesh) of 5, 10
and 20 hosts with 100 containers per host (2,000 at 20 hosts) and 1,000 NetworkPolicies of 10 rules
(each selecting one of four app labels, so every container is under 250 policies). Containers are
attached through the real tabby-cni, 6 at a time, before the policies are written. Reported per size: each agent's memory (RSS)
and CPU while idle (median over agents, min–max), the agents' CPU time during setup, the time from
the first policy write until every host has programmed every policy, the datastore's size and key count,
and the time for a killed agent (SIGKILL) to be restarted and resynced (ready, with its policy chains,
set elements back, then with all its BGP sessions established again). Quick mode: 3 and 5 hosts, 10 containers per host, 100 policies.`,
	Baseline: `For the resync only: loading the same host's whole ruleset (` + "`nft list table inet tabby`" + `, dumped
after the resync) with one ` + "`nft -f`" + ` into an empty namespace — the kernel-side floor of reprogramming a host.
Memory, CPU and datastore size have no baseline; the plots show how each grows with hosts.`,
	Method: `One lab per size, built, measured and removed in turn. Idle CPU is the agents' CPU time over
a 10 s window after programming settled.`,
	Systems: []report.System{{Key: report.Tabby, Label: "Tabby"}, {Key: "nftload", Label: "nft -f of the same ruleset", Baseline: true}},
	Metrics: scaleMetrics(),
	Needs:   []string{"ip", "nft", "ss"},
	Budget:  20 * time.Minute, QuickBudget: 100 * time.Second,
	Run: runScale,
}

func runScale(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	sizes := scaleSizes(env)
	for i, n := range sizes {
		sub := env.Sub()
		err := scaleOne(ctx, sub, rec, n, i == len(sizes)-1)
		sub.J.Close()
		if err != nil {
			return fmt.Errorf("%d hosts: %w", n, err)
		}
	}
	return nil
}

type scaleLab struct {
	env    *harness.Env
	l      *lab.Lab
	store  datastore.Store
	client *datastore.Client
	hosts  []lab.NodeStatus
	probes map[string]*harness.Probe
}

func scaleOne(ctx context.Context, env *harness.Env, rec *harness.Recorder, n int, largest bool) error {
	perHost := harness.Pick(env, 100, 10)
	policies := harness.Pick(env, scalePolicies, 100)
	s, err := newScaleLab(ctx, env, n)
	if err != nil {
		return err
	}
	cpu0 := s.agentCPU()
	// Containers first (each ADD is cheap while no policy exists), then
	// the policies, which every agent programs in one go.
	tc := time.Now()
	if err := s.startContainers(ctx, perHost); err != nil {
		return err
	}
	addRate := float64(n*perHost) / time.Since(tc).Seconds()
	env.Log.Info("containers started", "hosts", n, "containers", n*perHost, "perSecond", int(addRate))
	t0 := time.Now()
	var rs []api.Resource
	for _, p := range scalePolicySet(policies, "", 5201) {
		np := p.(*api.NetworkPolicy)
		if np.Name != benchAllowPolicy {
			var i int
			fmt.Sscanf(np.Name, "scale-%d", &i)
			np.Spec.Selector = fmt.Sprintf("app == '%s'", appLabels[i%len(appLabels)])
		} else {
			np.Spec.Selector = "bench == 'scale'"
		}
		rs = append(rs, np)
	}
	rs = append(rs, probeSrcPolicy())
	if err := createAll(ctx, s.client, rs, 8); err != nil {
		return err
	}
	want := policies + 2 // the scale policies, the allow policy and probe-src
	if err := s.waitAll(ctx, harness.Pick(env, 8*time.Minute, time.Minute), func(p *harness.Probe) (bool, error) {
		c, err := p.Policies()
		return c >= want, err
	}); err != nil {
		return fmt.Errorf("programming %d policies: %w", want, err)
	}
	program := time.Since(t0).Seconds()
	cpuSetup := s.agentCPU()
	// Settle, then an idle window.
	time.Sleep(harness.Pick(env, 5*time.Second, 2*time.Second))
	win := harness.Pick(env, 10*time.Second, 4*time.Second)
	c0 := s.agentCPU()
	time.Sleep(win)
	c1 := s.agentCPU()
	var rssAll, cpuAll, setupAll []float64
	for i, h := range s.hosts {
		rss, err := harness.RSSMiB(h.PID)
		if err != nil {
			return fmt.Errorf("memory of agent %s: %w", h.Name, err)
		}
		cpu := (c1[h.Name] - c0[h.Name]) / win.Seconds() * 100
		setup := cpuSetup[h.Name] - cpu0[h.Name]
		rec.Add(fmt.Sprintf("rss-%d", n), report.Tabby, i+1, rss)
		rec.Add(fmt.Sprintf("cpu-%d", n), report.Tabby, i+1, cpu)
		rec.Add(fmt.Sprintf("cpuset-%d", n), report.Tabby, i+1, setup)
		rssAll, cpuAll, setupAll = append(rssAll, rss), append(cpuAll, cpu), append(setupAll, setup)
	}
	rec.Add(fmt.Sprintf("program-%d", n), report.Tabby, 1, program)
	rec.Add(fmt.Sprintf("addrate-%d", n), report.Tabby, 1, addRate)
	db, keys, err := datastoreSize(ctx, s.store)
	if err != nil {
		return err
	}
	rec.Add(fmt.Sprintf("db-%d", n), report.Tabby, 1, db)
	rec.Add(fmt.Sprintf("keys-%d", n), report.Tabby, 1, float64(keys))
	x := float64(n)
	rec.Point(report.Series{Plot: "memory", Title: "agent memory against hosts", XLabel: fmt.Sprintf("hosts (%d containers each)", perHost), YLabel: "MiB", System: "agent RSS, median"}, x, stats.Median(rssAll))
	rec.Point(report.Series{Plot: "memory", System: "agent RSS, max"}, x, slices.Max(rssAll))
	rec.Point(report.Series{Plot: "memory", System: "datastore size (MiB)"}, x, db)
	rec.Point(report.Series{Plot: "cpu", Title: "agent CPU against hosts", XLabel: fmt.Sprintf("hosts (%d containers each)", perHost), YLabel: "CPU", System: "idle, % of a core (median)"}, x, stats.Median(cpuAll))
	rec.Point(report.Series{Plot: "cpu", System: "setup, CPU seconds (median)"}, x, stats.Median(setupAll))
	rec.Point(report.Series{Plot: "time", Title: "times against hosts", XLabel: fmt.Sprintf("hosts (%d containers each)", perHost), YLabel: "seconds", System: "policies written → programmed on all hosts"}, x, program)

	restarts := 1
	if largest {
		restarts = harness.Pick(env, 3, 1)
	}
	var resyncs, reroutes []float64
	for i := range min(restarts, n) {
		t, rt, base, err := s.resync(ctx, rec, s.hosts[i], n*perHost)
		if err != nil {
			return err
		}
		rec.Add(fmt.Sprintf("resync-%d", n), report.Tabby, i+1, t)
		rec.Add(fmt.Sprintf("resync-%d", n), "nftload", i+1, base)
		if math.IsNaN(rt) {
			rec.Note("%d hosts: after the restart of %s its BGP sessions were not all back within the wait.", n, s.hosts[i].Name)
		} else {
			rec.Add(fmt.Sprintf("reroute-%d", n), report.Tabby, i+1, rt)
			reroutes = append(reroutes, rt)
		}
		resyncs = append(resyncs, t)
	}
	rec.Point(report.Series{Plot: "time", System: "restarted agent → policy resynced (median)"}, x, stats.Median(resyncs))
	if len(reroutes) > 0 {
		rec.Point(report.Series{Plot: "time", System: "restarted agent → BGP sessions back (median)"}, x, stats.Median(reroutes))
	}
	return nil
}

// newScaleLab brings up a lab of n hosts and opens a netlink probe on
// each host.
func newScaleLab(ctx context.Context, env *harness.Env, n int) (*scaleLab, error) {
	l, err := harness.StartLab(ctx, env, lab.Config{Nodes: n})
	if err != nil {
		return nil, err
	}
	store, err := l.Store()
	if err != nil {
		return nil, err
	}
	env.J.Defer("lab store", store.Close)
	s := &scaleLab{env: env, l: l, store: store, client: datastore.NewClient(store), probes: map[string]*harness.Probe{}}
	for _, ns := range l.Nodes() {
		if ns.Type == "agent" {
			s.hosts = append(s.hosts, ns)
			if s.probes[ns.Name], err = env.J.NewProbe(ns.Namespace); err != nil {
				return nil, err
			}
			s.probes[ns.Name].AgentHTTP = netip.AddrPortFrom(ns.IP.Addr(), lab.AgentHTTPPort).String()
		}
	}
	if len(s.hosts) != n {
		return nil, fmt.Errorf("lab has %d agent hosts, want %d", len(s.hosts), n)
	}
	return s, nil
}

// probeSrcPolicy selects every bench container and takes its source from
// role=probe endpoints: its selector set is where the endpoint samples land.
func probeSrcPolicy() api.Resource {
	order := float64(benchAllowOrder + 1)
	return &api.NetworkPolicy{ObjectMeta: api.ObjectMeta{Name: "probe-src", Namespace: scaleNamespace},
		Spec: api.NetworkPolicySpec{Order: &order, Selector: "bench == 'scale'", Types: []string{"Ingress"}, Ingress: []api.Rule{{
			Action: "Allow", Protocol: proto(api.ProtocolTCP), Source: api.EntityRule{Selector: "role == 'probe'"},
			Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(9)}}}}}}
}

// runPropagation measures propagation in its own lab: 20 hosts (quick: 5)
// with one container each, so that the agents sharing this machine's
// cores are not also busy with the scale run's 2,000 containers.
func runPropagation(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	n := harness.Pick(env, 20, 5)
	s, err := newScaleLab(ctx, env, n)
	if err != nil {
		return err
	}
	if err := s.startContainers(ctx, 1); err != nil {
		return err
	}
	// Sample a settled cluster: every host has the route to every other
	// host's block (a just-started agent holds its own routes back until
	// its peers' End-of-RIB or the 2 s graceful-restart deferral).
	if err := s.waitAll(ctx, 2*time.Minute, func(p *harness.Probe) (bool, error) {
		rs, err := p.LearnedRoutes(lab.DefaultPool)
		return len(rs) >= n-1, err
	}); err != nil {
		return fmt.Errorf("routes between the hosts: %w", err)
	}
	before, err := s.policies()
	if err != nil {
		return err
	}
	if err := createAll(ctx, s.client, []api.Resource{probeSrcPolicy()}, 1); err != nil {
		return err
	}
	if err := s.waitAll(ctx, 2*time.Minute, func(p *harness.Probe) (bool, error) {
		c, err := p.Policies()
		return c > before[p], err
	}); err != nil {
		return fmt.Errorf("programming probe-src: %w", err)
	}
	return s.propagation(ctx, rec, n)
}

func createAll(ctx context.Context, c *datastore.Client, rs []api.Resource, workers int) error {
	ch := make(chan api.Resource)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range ch {
				if _, err := c.Create(ctx, r); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, r := range rs {
		ch <- r
	}
	close(ch)
	wg.Wait()
	return first
}

func (s *scaleLab) startContainers(ctx context.Context, perHost int) error {
	type job struct {
		host string
		i    int
	}
	ch := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				_, err := s.l.Run(ctx, lab.RunSpec{Name: fmt.Sprintf("%s-%d", j.host, j.i), Node: j.host,
					Labels:  []lab.KeyValue{{Key: "bench", Value: "scale"}, {Key: "app", Value: appLabels[j.i%len(appLabels)]}},
					Command: []string{"sleep", "infinity"}})
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range perHost {
		for _, h := range s.hosts {
			ch <- job{h.Name, i}
		}
	}
	close(ch)
	wg.Wait()
	return first
}

// agentCPU is each agent's CPU seconds so far.
func (s *scaleLab) agentCPU() map[string]float64 {
	out := map[string]float64{}
	for _, h := range s.hosts {
		v, _ := harness.CPUSeconds(h.PID)
		out[h.Name] = v
	}
	return out
}

// waitAll polls check on every host (every 5 ms) until all pass; it
// returns when the last passes or d runs out.
func (s *scaleLab) waitAll(ctx context.Context, d time.Duration, check func(p *harness.Probe) (bool, error)) error {
	_, err := waitProbes(ctx, s.probeList(), time.Now(), d, 5*time.Millisecond, check)
	return err
}

func (s *scaleLab) probeList() []*harness.Probe {
	var ps []*harness.Probe
	for _, h := range s.hosts {
		ps = append(ps, s.probes[h.Name])
	}
	return ps
}

// waitProbes polls check on every probe until all pass, and returns the
// time from t0 until each passed (same order as probes).
func waitProbes(ctx context.Context, probes []*harness.Probe, t0 time.Time, d, every time.Duration, check func(p *harness.Probe) (bool, error)) ([]time.Duration, error) {
	out := make([]time.Duration, len(probes))
	errs := make([]error, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last error
			for {
				ok, err := check(p)
				if ok {
					out[i] = time.Since(t0)
					return
				}
				if err != nil {
					last = err
				}
				if time.Since(t0) > d || ctx.Err() != nil {
					errs[i] = fmt.Errorf("host %s not there after %s (last error: %v)", p.NS, d, last)
					return
				}
				time.Sleep(every)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// datastoreSize returns etcd's database size (MiB) and the number of keys.
func datastoreSize(ctx context.Context, store datastore.Store) (float64, int, error) {
	es, ok := store.(*etcd.Store)
	if !ok {
		return 0, 0, fmt.Errorf("datastore is %T, not etcd", store)
	}
	cli := es.Client()
	st, err := cli.Status(ctx, cli.Endpoints()[0])
	if err != nil {
		return 0, 0, fmt.Errorf("datastore status: %w", err)
	}
	kvs, _, err := store.List(ctx, "/")
	if err != nil {
		return 0, 0, fmt.Errorf("count keys: %w", err)
	}
	return float64(st.DbSize) / (1 << 20), len(kvs), nil
}

// resync kills h's agent, restarts it and waits until its policy chains and
// set elements (policy), then its BGP sessions (NaN when not all back
// within the wait), are back; then it
// times `nft -f` of its ruleset into an empty namespace. Seconds.
func (s *scaleLab) resync(ctx context.Context, rec *harness.Recorder, h lab.NodeStatus, wantElems int) (float64, float64, float64, error) {
	p := s.probes[h.Name]
	chains, elems, err := settled(ctx, p)
	if err != nil {
		return 0, 0, 0, err
	}
	if elems != wantElems {
		// Every container is in exactly one app set and the probe
		// endpoints are gone: anything else is stale (or missing) state.
		rec.Note("%d hosts: before the restart of %s its selector sets held %d addresses, %d expected (one per container); the restart is judged against %d.",
			len(s.hosts), h.Name, elems, wantElems, wantElems)
	}
	elems = wantElems
	sessions, err := bgpSessions(ctx, h.Namespace)
	if err != nil {
		return 0, 0, 0, err
	}
	if err := s.l.StopAgent(h.Name, true); err != nil {
		return 0, 0, 0, err
	}
	// The new agent binds the old one's ports: wait for the kill to land.
	if !harness.WaitExit(h.PID, 30*time.Second) {
		return 0, 0, 0, fmt.Errorf("the killed agent of %s (pid %d) is still running", h.Name, h.PID)
	}
	if err := waitNoListener(h.Namespace, 30*time.Second); err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	if err := s.l.StartAgent(ctx, h.Name); err != nil {
		return 0, 0, 0, err
	}
	var status string
	policyDone := time.Duration(-1)
	_, werr := waitProbes(ctx, []*harness.Probe{p}, t0, harness.Pick(s.env, 3*time.Minute, time.Minute), 5*time.Millisecond, func(p *harness.Probe) (bool, error) {
		if policyDone < 0 {
			c, err := p.Policies()
			if err != nil || c < chains {
				status = fmt.Sprintf("%d of %d policies", c, chains)
				return false, err
			}
			e, err := p.SetElements()
			if err != nil || e < elems {
				status = fmt.Sprintf("%d of %d set elements", e, elems)
				return false, err
			}
			policyDone = time.Since(t0)
		}
		up, err := bgpSessions(ctx, h.Namespace)
		status = fmt.Sprintf("%d of %d BGP sessions established", up, sessions)
		return up >= sessions, err
	})
	if policyDone < 0 {
		return 0, 0, 0, fmt.Errorf("resync of %s: %w (%s)", h.Name, werr, status)
	}
	routesT := math.NaN()
	if werr == nil {
		routesT = time.Since(t0).Seconds()
	} else {
		s.env.Log.Warn("BGP sessions not back after the restart", "host", h.Name, "status", status)
	}
	took := policyDone.Seconds()
	// The agent's PID changed.
	for _, ns := range s.l.Nodes() {
		for i := range s.hosts {
			if s.hosts[i].Name == ns.Name {
				s.hosts[i].PID = ns.PID
			}
		}
	}
	base, err := nftReload(ctx, s.env, h.Namespace)
	return took, routesT, base, err
}

// bgpSessions counts the established BGP (port 179) connections in ns.
func bgpSessions(ctx context.Context, ns string) (int, error) {
	out, err := harness.Run(ctx, harness.InNS(ns, "ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )")...)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n, nil
}

var commentRe = regexp.MustCompile(`(?m)[ \t]*comment ".*"$`)

// waitNoListener waits until nothing listens on TCP in ns (the killed
// agent's health and BGP ports are free again).
func waitNoListener(ns string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		out, err := harness.Run(context.Background(), harness.InNS(ns, "ss", "-Hltn")...)
		if err == nil && strings.TrimSpace(string(out)) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still listening after the agent was killed: %s", ns, strings.TrimSpace(string(out)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// policies reads every host's programmed policy count.
func (s *scaleLab) policies() (map[*harness.Probe]int, error) {
	out := map[*harness.Probe]int{}
	for _, p := range s.probeList() {
		c, err := p.Policies()
		if err != nil {
			return nil, err
		}
		out[p] = c
	}
	return out, nil
}

// settled waits until a host's policy chains and set elements read the
// same twice in a row, half a second apart (the deletes of the last
// propagation samples may still be on their way), and returns them.
func settled(ctx context.Context, p *harness.Probe) (chains, elems int, err error) {
	prevC, prevE := -1, -1
	for range 60 {
		if chains, err = p.Policies(); err != nil {
			return 0, 0, err
		}
		if elems, err = p.SetElements(); err != nil {
			return 0, 0, err
		}
		if chains == prevC && elems == prevE {
			return chains, elems, nil
		}
		prevC, prevE = chains, elems
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return 0, 0, fmt.Errorf("%s: the ruleset did not settle in 30 s", p.NS)
}

// nftReload dumps table inet tabby of ns and times loading it with one
// nft -f into a fresh namespace, in seconds.
func nftReload(ctx context.Context, env *harness.Env, ns string) (float64, error) {
	dump, err := harness.Run(ctx, harness.InNS(ns, "nft", "list", "table", "inet", "tabby")...)
	if err != nil {
		return 0, err
	}
	// nft 1.0.6 prints comments holding quotes without escaping them, so
	// it cannot read its own dump back: drop the comments.
	dump = commentRe.ReplaceAll(dump, nil)
	f := filepath.Join(env.Tmp, "ruleset.nft")
	if err := os.WriteFile(f, dump, 0o600); err != nil {
		return 0, err
	}
	scratch := env.Name("nf")
	if _, err := env.J.Namespace(scratch); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := harness.Run(ctx, harness.InNS(scratch, "nft", "-f", f)...); err != nil {
		return 0, fmt.Errorf("reload the dumped ruleset: %w", err)
	}
	return time.Since(t0).Seconds(), nil
}

// propagation takes the policy, endpoint and route samples in this lab.
func (s *scaleLab) propagation(ctx context.Context, rec *harness.Recorder, n int) error {
	env := s.env
	rounds, perRound := env.Rounds, harness.Pick(env, 6, 4)
	// The push baseline's own table and set on every host.
	for _, h := range s.hosts {
		if _, err := harness.Run(ctx, harness.InNS(h.Namespace, "nft", "add table inet tbbpush; add set inet tbbpush probe { type ipv4_addr; }")...); err != nil {
			return fmt.Errorf("push table: %w", err)
		}
	}
	sets, err := s.findProbeSets(ctx)
	if err != nil {
		return err
	}
	engine := ipam.New(s.store, slog.New(slog.DiscardHandler))
	seq := 0
	for r := 1; r <= rounds; r++ {
		pool := fmt.Sprintf("probe-%d-%d", n, r)
		poolCIDR := fmt.Sprintf("10.%d.0.0/16", 150+(n*7+r)%90)
		if _, err := s.client.Create(ctx, &api.IPPool{ObjectMeta: api.ObjectMeta{Name: pool}, Spec: api.IPPoolSpec{CIDR: poolCIDR, BlockSize: 26}}); err != nil {
			return fmt.Errorf("probe pool: %w", err)
		}
		var pol, ep, rt map[string][]float64 = map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
		for _, sys := range harness.Order(r, report.Tabby, "push") {
			for k := range perRound {
				seq++
				host := s.hosts[k%len(s.hosts)]
				others := s.otherProbes(host.Name)
				switch sys {
				case report.Tabby:
					d, err := s.policySample(ctx, fmt.Sprintf("probe-%d-%d", n, seq))
					if err != nil {
						return err
					}
					pol[sys] = append(pol[sys], d)
					addr := netip.AddrFrom4([4]byte{10, 77, byte(seq / 250), byte(seq%250 + 1)})
					if d, err = s.endpointSample(ctx, sets, fmt.Sprintf("probe%d", seq), addr); err != nil {
						return err
					}
					ep[sys] = append(ep[sys], d)
					if d, err = s.routeSample(ctx, engine, others, host.Name, pool, fmt.Sprintf("probe-%d-%d", n, seq)); err != nil {
						return err
					}
					rt[sys] = append(rt[sys], d)
				case "push":
					d, err := s.push(ctx, s.hosts, func(h lab.NodeStatus) []string {
						return []string{"nft", fmt.Sprintf("add chain inet tbbpush p%d; add rule inet tbbpush p%d tcp dport 9 accept", seq, seq)}
					})
					if err != nil {
						return err
					}
					pol[sys] = append(pol[sys], d)
					if d, err = s.push(ctx, s.hosts, func(h lab.NodeStatus) []string {
						return []string{"nft", fmt.Sprintf("add element inet tbbpush probe { 10.78.%d.%d }", seq/250, seq%250+1)}
					}); err != nil {
						return err
					}
					ep[sys] = append(ep[sys], d)
					var targets []lab.NodeStatus
					for _, h := range s.hosts {
						if h.Name != host.Name {
							targets = append(targets, h)
						}
					}
					if d, err = s.push(ctx, targets, func(lab.NodeStatus) []string {
						return []string{"ip", "route", "add", fmt.Sprintf("10.79.%d.%d/26", seq/4, (seq%4)*64), "via", host.IP.Addr().String()}
					}); err != nil {
						return err
					}
					rt[sys] = append(rt[sys], d)
				}
			}
		}
		for _, sys := range []string{report.Tabby, "push"} {
			for key, v := range map[string][]float64{"policy": pol[sys], "ep": ep[sys], "route": rt[sys]} {
				rec.Add(key+"-p50", sys, r, stats.Percentile(v, 50))
				rec.Add(key+"-p99", sys, r, stats.Percentile(v, 99))
			}
			rec.Dist("policy", "policy apply → enforced on all hosts", "ms", sys, pol[sys])
			rec.Dist("endpoint", "endpoint add → set updated on all hosts", "ms", sys, ep[sys])
			rec.Dist("route", "block claim → route on all hosts", "ms", sys, rt[sys])
		}
		env.Log.Info("propagation round", "hosts", n, "round", r)
	}
	return nil
}

// findProbeSets writes one role=probe endpoint and finds, on every host,
// the selector set its address lands in (the set of probe-src's source).
func (s *scaleLab) findProbeSets(ctx context.Context) (map[string]*nftables.Set, error) {
	addr := netip.MustParseAddr("10.77.255.250")
	name := api.WorkloadEndpointName(ghostNode, "cni", "probewarm", "eth0")
	wep := &api.WorkloadEndpoint{ObjectMeta: api.ObjectMeta{Name: name, Namespace: scaleNamespace, Labels: map[string]string{"role": "probe"}},
		Spec: api.WorkloadEndpointSpec{Orchestrator: "cni", Node: ghostNode, Workload: "probewarm", ContainerID: "probewarm", Endpoint: "eth0",
			InterfaceName: "tbyprobewarm", IPNetworks: []string{addr.String() + "/32"}}}
	if _, err := s.client.Create(ctx, wep); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	sets := map[string]*nftables.Set{}
	_, err := waitProbes(ctx, s.probeList(), time.Now(), 2*time.Minute, 50*time.Millisecond, func(p *harness.Probe) (bool, error) {
		set, err := p.SetContaining(addr)
		if set != nil {
			mu.Lock()
			sets[p.NS] = set
			mu.Unlock()
		}
		return set != nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("find the role=probe selector set: %w", err)
	}
	if _, err := s.client.Delete(ctx, "WorkloadEndpoint", scaleNamespace, name, ""); err != nil {
		return nil, err
	}
	return sets, nil
}

func (s *scaleLab) otherProbes(host string) []*harness.Probe {
	var ps []*harness.Probe
	for _, h := range s.hosts {
		if h.Name != host {
			ps = append(ps, s.probes[h.Name])
		}
	}
	return ps
}

func maxMillis(ds []time.Duration) float64 {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return ms(m)
}

func (s *scaleLab) policySample(ctx context.Context, name string) (float64, error) {
	order := float64(benchAllowOrder + 2)
	np := &api.NetworkPolicy{ObjectMeta: api.ObjectMeta{Name: name, Namespace: scaleNamespace},
		Spec: api.NetworkPolicySpec{Order: &order, Selector: "bench == 'scale'", Types: []string{"Ingress"}, Ingress: []api.Rule{{
			Action: "Allow", Protocol: proto(api.ProtocolTCP), Source: api.EntityRule{Selector: "role == 'probe'"},
			Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(9)}}}}}}
	before, err := s.policies()
	if err != nil {
		return 0, err
	}
	if _, err := s.client.Create(ctx, np); err != nil {
		return 0, err
	}
	t0 := time.Now()
	ds, err := waitProbes(ctx, s.probeList(), t0, 60*time.Second, 5*time.Millisecond, func(p *harness.Probe) (bool, error) {
		c, err := p.Policies()
		return c > before[p], err
	})
	if err != nil {
		return 0, fmt.Errorf("policy %s: %w", name, err)
	}
	if _, err := s.client.Delete(ctx, "NetworkPolicy", scaleNamespace, name, ""); err != nil {
		return 0, err
	}
	// Gone everywhere before the next sample counts again.
	if _, err := waitProbes(ctx, s.probeList(), time.Now(), 60*time.Second, 20*time.Millisecond, func(p *harness.Probe) (bool, error) {
		c, err := p.Policies()
		return err == nil && c <= before[p], err
	}); err != nil {
		return 0, fmt.Errorf("policy %s deleted: %w", name, err)
	}
	return maxMillis(ds), nil
}

func (s *scaleLab) endpointSample(ctx context.Context, sets map[string]*nftables.Set, workload string, addr netip.Addr) (float64, error) {
	name := api.WorkloadEndpointName(ghostNode, "cni", workload, "eth0")
	wep := &api.WorkloadEndpoint{ObjectMeta: api.ObjectMeta{Name: name, Namespace: scaleNamespace, Labels: map[string]string{"role": "probe"}},
		Spec: api.WorkloadEndpointSpec{Orchestrator: "cni", Node: ghostNode, Workload: workload, ContainerID: workload, Endpoint: "eth0",
			InterfaceName: "tbyprobe" + fmt.Sprintf("%03d", len(workload)), IPNetworks: []string{addr.String() + "/32"}}}
	if _, err := s.client.Create(ctx, wep); err != nil {
		return 0, err
	}
	t0 := time.Now()
	ds, err := waitProbes(ctx, s.probeList(), t0, 60*time.Second, 5*time.Millisecond, func(p *harness.Probe) (bool, error) {
		return p.SetHas(sets[p.NS], addr), nil
	})
	if err != nil {
		return 0, fmt.Errorf("endpoint %s: %w", addr, err)
	}
	if _, err := s.client.Delete(ctx, "WorkloadEndpoint", scaleNamespace, name, ""); err != nil {
		return 0, err
	}
	return maxMillis(ds), nil
}

func (s *scaleLab) routeSample(ctx context.Context, engine *ipam.IPAM, others []*harness.Probe, host, pool, handle string) (float64, error) {
	// The claim is committed inside Allocate, before the allocation
	// itself: time from the call, or a fast agent beats the clock.
	t0 := time.Now()
	as, err := engine.Allocate(ctx, ipam.Request{Handle: handle, Node: host, IPv4: 1, Pools4: []string{pool}})
	if err != nil {
		return 0, fmt.Errorf("claim a block for %s: %w", host, err)
	}
	block := as[0].Block
	ds, err := waitProbes(ctx, others, t0, 60*time.Second, 5*time.Millisecond, func(p *harness.Probe) (bool, error) { return p.HasRoute(block), nil })
	if err != nil {
		return 0, fmt.Errorf("route to %s (claimed by %s): %w", block, host, err)
	}
	return maxMillis(ds), nil
}

// push runs argv(h) in every host's namespace at once and returns the time
// until the last returned, in ms.
func (s *scaleLab) push(ctx context.Context, hosts []lab.NodeStatus, argv func(lab.NodeStatus) []string) (float64, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	t0 := time.Now()
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = harness.Run(ctx, harness.InNS(h.Namespace, argv(h)...)...)
		}()
	}
	wg.Wait()
	d := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return ms(d), nil
}
