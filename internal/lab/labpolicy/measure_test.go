package labpolicy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
)

// flipPoll is the timeout of one attempt while waiting for a pair to
// flip: an allowed connection inside the lab takes well under a
// millisecond, so a pair that does not connect within it is denied. It
// bounds the error of an "allowed from" time.
const flipPoll = 10 * time.Millisecond

// waitFlip tries a TCP connection from ns to dst again and again until
// its outcome is allowed, and returns when the first such attempt
// started, relative to t0. For allowed=true that is an upper bound (the
// change happened after the previous, failed, attempt started); for
// allowed=false it is when the first dropped SYN was sent (the change
// happened before it, after the previous attempt's connection).
func waitFlip(ctx context.Context, ns string, dst netip.AddrPort, allowed bool, t0 time.Time) (time.Duration, error) {
	for ctx.Err() == nil {
		start := time.Now()
		o := lab.ProbeOnce(ctx, lab.ProbeTarget{NS: ns, Protocol: lab.ProbeTCP, Dst: dst, Timeout: flipPoll})
		if o.Err != nil && ctx.Err() == nil {
			return 0, o.Err
		}
		if got := o.Allowed && o.Detail == "connected"; got == allowed && o.Err == nil {
			return start.Sub(t0), nil
		}
		if !allowed {
			time.Sleep(time.Millisecond) // do not flood the conntrack table
		}
	}
	return 0, ctx.Err()
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkPrivilegedPolicyEnforcement measures, on a 3-host lab, the time
// from `tabby apply` of a policy (the CLI started) to its enforcement on
// every host, detected by real traffic: a client on h1 polls a server on
// each host, denied by a base policy, until the new policy lets it
// through; then the time from `tabby delete` until all three are denied
// again. One iteration is one apply and one delete; run with -benchtime
// 20x.
//
//	go test -run XXX -bench PolicyEnforcement -benchtime 20x ./internal/lab/labpolicy/
func BenchmarkPrivilegedPolicyEnforcement(b *testing.B) {
	requirePrivileged(b)
	w := upWorld(b, lab.Config{Name: uniqueName("pe"), Nodes: 3})
	specs := []lab.RunSpec{{Name: "client", Node: "h1", Labels: []lab.KeyValue{{Key: "role", Value: "client"}}}}
	servers := []string{"s1", "s2", "s3"}
	for i, s := range servers {
		specs = append(specs, lab.RunSpec{Name: s, Node: lab.HostName(i + 1), Labels: []lab.KeyValue{{Key: "role", Value: "server"}}})
	}
	w.run(specs...)
	client := w.cs["client"].NetNS
	var open, closed []reachCase
	for _, s := range servers {
		ln, err := lab.ListenProbe(w.cs[s].NetNS, lab.ProbeTCP, netip.AddrPortFrom(w.ip(s), 80))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		open = append(open, reachCase{"client → " + s, client, lab.ProbeTCP, netip.AddrPortFrom(w.ip(s), 80), true})
		closed = append(closed, reachCase{"client → " + s, client, lab.ProbeTCP, netip.AddrPortFrom(w.ip(s), 80), false})
	}
	// Routes between the hosts first: a pair that cannot be routed would
	// look denied.
	expectReach(b, open)
	w.apply(`
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: servers-closed}
spec: {order: 100, selector: role == 'server', types: [Ingress]}`)
	expectReach(b, closed)

	var toAllow, toDeny, cliApply, cliDelete []time.Duration
	var perHost [3][]time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("open-%d", i)
		manifest := fmt.Sprintf(`apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: %s}
spec:
  order: 1
  selector: role == 'server'
  ingress: [{action: Allow, protocol: TCP, source: {selector: role == 'client'}, destination: {ports: [80]}}]
`, name)
		for _, allow := range []bool{true, false} {
			args := []string{"--lab", w.lab.Name(), "apply", "-f", "-"}
			if !allow {
				args = []string{"--lab", w.lab.Name(), "delete", "globalnetworkpolicy", name}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t0 := time.Now()
			got := make([]time.Duration, len(servers))
			errs := make([]error, len(servers))
			var wg sync.WaitGroup
			for j, s := range servers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[j], errs[j] = waitFlip(ctx, client, netip.AddrPortFrom(w.ip(s), 80), allow, t0)
				}()
			}
			_, err := w.tabby(manifest, args...)
			cli := time.Since(t0)
			if err != nil {
				cancel()
				b.Fatal(err)
			}
			wg.Wait()
			cancel()
			if err := errors.Join(errs...); err != nil {
				b.Fatalf("iteration %d (allow=%v): %v", i, allow, err)
			}
			all := slices.Max(got)
			if allow {
				toAllow, cliApply = append(toAllow, all), append(cliApply, cli)
				for j := range got {
					perHost[j] = append(perHost[j], got[j])
				}
			} else {
				toDeny, cliDelete = append(toDeny, all), append(cliDelete, cli)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(toAllow, 0.5)), "apply-enforced-p50-ms")
	b.ReportMetric(ms(percentile(toAllow, 0.99)), "apply-enforced-p99-ms")
	b.ReportMetric(ms(percentile(toDeny, 0.5)), "delete-enforced-p50-ms")
	b.ReportMetric(ms(percentile(toDeny, 0.99)), "delete-enforced-p99-ms")
	b.ReportMetric(ms(percentile(cliApply, 0.5)), "apply-cli-p50-ms")
	b.Logf("%d applies; from the CLI's start, every host enforcing: apply p50 %.1f ms p99 %.1f ms max %.1f ms; delete p50 %.1f ms p99 %.1f ms; the apply command itself p50 %.1f ms, delete %.1f ms",
		len(toAllow), ms(percentile(toAllow, 0.5)), ms(percentile(toAllow, 0.99)), ms(slices.Max(toAllow)),
		ms(percentile(toDeny, 0.5)), ms(percentile(toDeny, 0.99)), ms(percentile(cliApply, 0.5)), ms(percentile(cliDelete, 0.5)))
	for j := range perHost {
		b.Logf("server on h%d (client on h1): apply p50 %.1f ms p99 %.1f ms", j+1, ms(percentile(perHost[j], 0.5)), ms(percentile(perHost[j], 0.99)))
	}
}

// BenchmarkPrivilegedAgentMemory measures an agent's memory with 10,000
// workload endpoints and 1,000 NetworkPolicies of 10 rules in the
// datastore: h1 runs four containers (app=app0…app3) that every policy
// selects one of (so all 1,000 policies apply on h1, each of its rules a
// selector set of 2,500 remote endpoints); h2 runs none (it keeps only
// the cluster's state, no chains). The 9,996 other endpoints are written
// directly to the datastore on 100 nodes that do not exist.
//
//	go test -run XXX -bench AgentMemory -benchtime 1x ./internal/lab/labpolicy/
func BenchmarkPrivilegedAgentMemory(b *testing.B) {
	requirePrivileged(b)
	const (
		endpoints = 10000
		policies  = 1000
		rules     = 10
	)
	w := upWorld(b, lab.Config{Name: uniqueName("pa"), Nodes: 2})
	var specs []lab.RunSpec
	for i := range 4 {
		specs = append(specs, lab.RunSpec{Name: fmt.Sprintf("app%d", i), Node: "h1", Labels: []lab.KeyValue{{Key: "app", Value: fmt.Sprintf("app%d", i)}}})
	}
	w.run(specs...)
	agents := map[string]lab.NodeStatus{}
	for _, n := range w.lab.Nodes() {
		agents[n.Name] = n
	}
	report := func(when string) {
		for _, h := range []string{"h1", "h2"} {
			rss, pss := procMemory(b, agents[h].PID)
			heap := agentMetric(b, agents[h], "go_memstats_heap_inuse_bytes")
			b.Logf("%s: agent of %s: RSS %.1f MiB, PSS %.1f MiB, Go heap in use %.1f MiB", when, h, rss, pss, heap/(1<<20))
			if when == "loaded" {
				b.ReportMetric(rss, "rss-MiB-"+h)
				b.ReportMetric(heap/(1<<20), "heap-MiB-"+h)
			}
		}
	}
	report("idle")

	for range b.N {
		ctx := context.Background()
		t0 := time.Now()
		var objs []api.Resource
		for i := range endpoints - len(specs) {
			objs = append(objs, &api.WorkloadEndpoint{
				ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("ghost-%05d", i), Namespace: "default", Labels: map[string]string{
					"app": fmt.Sprintf("app%d", i%4), "projectcalico.org/namespace": "default", "projectcalico.org/orchestrator": "k8s",
				}},
				Spec: api.WorkloadEndpointSpec{
					Orchestrator: "k8s", Workload: fmt.Sprintf("ghost-%05d", i), Node: fmt.Sprintf("ghost-node-%02d", i%100),
					ContainerID: fmt.Sprintf("%064x", i), Endpoint: "eth0", InterfaceName: fmt.Sprintf("tbyg%07d", i),
					IPNetworks: []string{fmt.Sprintf("10.250.%d.%d/32", i/250, i%250+1)}, Profiles: []string{lab.DefaultNetwork}, Network: lab.DefaultNetwork,
				},
			})
		}
		for i := range policies {
			order := float64(i)
			var in []api.Rule
			for j := range rules {
				tcp := api.Protocol("TCP")
				in = append(in, api.Rule{Action: api.ActionAllow, Protocol: &tcp,
					Source:      api.EntityRule{Selector: fmt.Sprintf("app == 'app%d'", (i+j)%4)},
					Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + j))}}})
			}
			objs = append(objs, &api.NetworkPolicy{
				ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("scale-%04d", i), Namespace: "default"},
				Spec:       api.NetworkPolicySpec{Order: &order, Selector: fmt.Sprintf("app == 'app%d'", i%4), Types: []string{"Ingress"}, Ingress: in},
			})
		}
		if err := createAll(ctx, w, objs, 8); err != nil {
			b.Fatal(err)
		}
		written := time.Since(t0)
		// Programmed on h1: the agent reports the policies in its table
		// (the flat table inlines them, so there is no chain to count).
		deadline := time.Now().Add(5 * time.Minute)
		for {
			n := agentMetric(b, agents["h1"], `tabby_agent_policy_table{what="policies"}`)
			if int(n) >= policies {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("h1 programmed %v policies after 5 minutes, want %d or more", n, policies)
			}
			time.Sleep(500 * time.Millisecond)
		}
		b.Logf("wrote %d endpoints and %d policies in %s; h1 programmed them %s later", len(objs)-policies, policies, written.Round(time.Millisecond), (time.Since(t0) - written).Round(time.Millisecond))
		time.Sleep(5 * time.Second) // let the garbage collector settle
		report("loaded")
	}
}

// createAll creates objects with a few writers at once.
func createAll(ctx context.Context, w *world, objs []api.Resource, writers int) error {
	ch := make(chan api.Resource)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range ch {
				if _, err := w.client.Create(ctx, o); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("create %s %s: %w", o.KindInfo().Kind, o.GetObjectMeta().Name, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, o := range objs {
		ch <- o
	}
	close(ch)
	wg.Wait()
	return first
}

// procMemory is a process's RSS and PSS in MiB.
func procMemory(tb testing.TB, pid int) (rss, pss float64) {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			continue
		}
		switch k {
		case "Rss":
			rss = kb / 1024
		case "Pss":
			pss = kb / 1024
		}
	}
	return rss, pss
}

// agentMetric reads one gauge from an agent's /metrics.
func agentMetric(tb testing.TB, n lab.NodeStatus, name string) float64 {
	tb.Helper()
	resp, err := lab.HTTPClientIn(n.Namespace).Get(fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(n.IP.Addr(), lab.AgentHTTPPort)))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	tb.Fatalf("agent of %s: no metric %s", n.Name, name)
	return 0
}
