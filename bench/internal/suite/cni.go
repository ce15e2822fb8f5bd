package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/bench/internal/stats"
	"github.com/tabbynet/tabby/internal/netns"
)

// debianPlugins is where Debian's containernetworking-plugins installs ptp and host-local.
const debianPlugins = "/usr/lib/cni"

func cniMetrics() []report.Metric {
	var ms []report.Metric
	for _, mode := range []struct{ key, label string }{{"single", "single"}, {"conc", "20 concurrent"}} {
		for _, op := range []string{"ADD", "DEL"} {
			for _, p := range []string{"p50", "p99"} {
				ms = append(ms, report.Metric{Key: fmt.Sprintf("%s-%s-%s", mode.key, op, p), Label: fmt.Sprintf("%s %s, %s", op, p, mode.label), Unit: "ms", LowerIsBetter: true})
			}
		}
	}
	return ms
}

// CNILatency is issue 9's first benchmark: CNI ADD and DEL latency through
// libcni, one at a time and 20 at once, against Debian's ptp + host-local.
var CNILatency = harness.Benchmark{
	ID:    "cni",
	Title: "CNI ADD/DEL latency",
	What: `Time for a container runtime to attach (ADD) and detach (DEL) a container: libcni execs the
plugin chain exactly as containerd or Mesos does. Tabby's ADD is tabby-cni → agent socket → IPAM
(etcd) → veth, routes, nftables policy → WorkloadEndpoint write; DEL undoes it. "single" is one
ADD then one DEL at a time on one container namespace; "20 concurrent" is 20 workers, each
cycling ADD/DEL on its own container namespace, and every operation's latency is counted.`,
	Baseline: `Debian's containernetworking-plugins ptp (veth pair + /32 host route, the closest stock
analogue of Calico's plugin) with host-local IPAM (state in a temp dir), ipMasq off; the same libcni
caller, from the same private "host" namespace.`,
	Method: `One warm-up cycle per system. Each round runs both systems (order alternating between rounds);
p50/p99 are nearest-rank over that round's operations. Times include plugin exec start-up, as a
runtime pays it. Machine baseline (cnitool, no concurrency): ADD 10.9 ms / 12.4 ms, DEL 22 / 42.5 ms.`,
	Systems: []report.System{{Key: report.Tabby, Label: "Tabby"}, {Key: "ptp", Label: "ptp + host-local", Baseline: true}},
	Metrics: cniMetrics(),
	Needs:   []string{"ip"},
	Budget:  6 * time.Minute, QuickBudget: 90 * time.Second,
	Run: runCNI,
}

type cniSystem struct {
	key  string
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

func runCNI(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	if _, err := os.Stat(filepath.Join(debianPlugins, "ptp")); err != nil {
		return harness.Skipf("Debian's containernetworking-plugins is not installed (%s/ptp)", debianPlugins)
	}
	cniDir, err := harness.CNIDir(env)
	if err != nil {
		return err
	}
	ds, err := harness.StartDatastore(ctx, env)
	if err != nil {
		return err
	}
	if err := ds.Apply(ctx, harness.Pool("bench", "10.90.0.0/16", 26, "")); err != nil {
		return err
	}
	h, err := harness.StartHost(ctx, env, ds, "bench1", "10.200.0.1/24", "--disable-routing")
	if err != nil {
		return err
	}
	tabbyList, err := h.ConfList("net1", nil)
	if err != nil {
		return err
	}
	ipamDir := filepath.Join(env.Tmp, "host-local")
	ptpList, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"ptpbench","plugins":[
		{"type":"ptp","ipMasq":false,"mtu":1500,"ipam":{"type":"host-local","dataDir":%q,
		 "ranges":[[{"subnet":"10.98.0.0/16"}]],"routes":[{"dst":"0.0.0.0/0"}]}}]}`, ipamDir)))
	if err != nil {
		return err
	}
	systems := map[string]*cniSystem{
		report.Tabby: {key: report.Tabby, list: tabbyList, cni: libcni.NewCNIConfigWithCacheDir([]string{cniDir}, filepath.Join(env.Tmp, "cache-tabby"), nil)},
		"ptp":        {key: "ptp", list: ptpList, cni: libcni.NewCNIConfigWithCacheDir([]string{debianPlugins}, filepath.Join(env.Tmp, "cache-ptp"), nil)},
	}
	const workers = 20
	containers := make([]string, workers)
	for i := range containers {
		name := env.Name("c")
		if containers[i], err = env.J.Namespace(name); err != nil {
			return err
		}
	}
	single := harness.Pick(env, 60, 20)
	perWorker := harness.Pick(env, 6, 2)
	for _, s := range systems {
		if _, _, err := s.cycle(ctx, h.NSPath, containers[0], "warm"); err != nil {
			return fmt.Errorf("%s warm-up: %w", s.key, err)
		}
	}
	for r := 1; r <= env.Rounds; r++ {
		for _, key := range harness.Order(r, report.Tabby, "ptp") {
			s := systems[key]
			var adds, dels []time.Duration
			for i := range single {
				a, d, err := s.cycle(ctx, h.NSPath, containers[0], fmt.Sprintf("s%d-%d", r, i))
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				adds, dels = append(adds, a), append(dels, d)
			}
			record(rec, "single", key, r, adds, dels)
			adds, dels, err = s.concurrent(ctx, h.NSPath, containers, perWorker, r)
			if err != nil {
				return fmt.Errorf("%s, %d concurrent: %w", key, workers, err)
			}
			record(rec, "conc", key, r, adds, dels)
			env.Log.Info("round", "round", r, "system", key)
		}
	}
	return nil
}

func record(rec *harness.Recorder, mode, system string, r int, adds, dels []time.Duration) {
	label := map[string]string{"single": "one at a time", "conc": "20 concurrent"}[mode]
	for i, op := range []string{"ADD", "DEL"} {
		ms := stats.Millis([][]time.Duration{adds, dels}[i])
		rec.Add(fmt.Sprintf("%s-%s-p50", mode, op), system, r, stats.Percentile(ms, 50))
		rec.Add(fmt.Sprintf("%s-%s-p99", mode, op), system, r, stats.Percentile(ms, 99))
		rec.Dist(mode+"-"+op, op+" latency, "+label, "ms", system, ms)
	}
}

// cycle runs one ADD then one DEL from inside the host namespace (the
// plugins are forked from the locked thread, so they start in it).
func (s *cniSystem) cycle(ctx context.Context, hostNS, containerNS, id string) (add, del time.Duration, err error) {
	rt := &libcni.RuntimeConf{ContainerID: "bench-" + id, NetNS: containerNS, IfName: "eth0"}
	err = netns.Do(hostNS, func() error {
		octx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		t0 := time.Now()
		if _, err := s.cni.AddNetworkList(octx, s.list, rt); err != nil {
			return fmt.Errorf("ADD: %w", err)
		}
		t1 := time.Now()
		if err := s.cni.DelNetworkList(octx, s.list, rt); err != nil {
			return fmt.Errorf("DEL: %w", err)
		}
		add, del = t1.Sub(t0), time.Since(t1)
		return nil
	})
	return add, del, err
}

func (s *cniSystem) concurrent(ctx context.Context, hostNS string, containers []string, n, round int) (adds, dels []time.Duration, err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w, c := range containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				a, d, cerr := s.cycle(ctx, hostNS, c, fmt.Sprintf("c%d-%d-%d", round, w, i))
				mu.Lock()
				if cerr != nil && err == nil {
					err = cerr
				}
				if cerr == nil {
					adds, dels = append(adds, a), append(dels, d)
				}
				mu.Unlock()
				if cerr != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return adds, dels, err
}
