package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/bench/internal/stats"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/netns"
)

// DNS compares `tabby dns` with dnsmasq serving the same records: queries
// per second under dnsperf, and how soon a new container's name resolves.
var DNS = harness.Benchmark{
	ID:    "dns",
	Title: "DNS queries per second and ADD → resolvable",
	What: `**Queries/s**: dnsperf (4 sockets × 200 outstanding queries) replays every one of 1,000 container
names (A, NOERROR) plus 10 % unknown names (NXDOMAIN) against ` + "`tabby dns`" + ` reading the
names from the datastore (1,000 WorkloadEndpoints, ` + "`svc-N.default.mesos`" + `). Server and dnsperf share
the machine's cores, inside a private namespace, on its loopback. **ADD → resolvable**: a container is
attached with a real CNI ADD through a tabby agent; the time from ADD returning (the endpoint is
committed) until ` + "`<container-id>.default.mesos`" + ` answers, polled every millisecond; "ADD start →
resolvable" adds the ADD itself.`,
	Baseline: `dnsmasq with the same 1,000 names (` + "`--host-record`" + `, cache off) for queries/s; for the
new name, a hosts file written into dnsmasq's ` + "`--hostsdir`" + ` (read on inotify), from the write to the
first answer. Machine baseline: dnsmasq ~207k queries/s, a bare miekg/dns responder ~174k.`,
	Method: `Each round runs both servers (order alternating). QPS is dnsperf's figure; every answer is
checked by dnsperf's response-code counts (lost queries are noted).`,
	Systems: []report.System{{Key: report.Tabby, Label: "tabby dns"}, {Key: "dnsmasq", Label: "dnsmasq", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "qps", Label: "queries", Unit: "1/s"},
		{Key: "lat", Label: "average query latency", Unit: "ms", LowerIsBetter: true},
		{Key: "res-p50", Label: "registered → resolvable p50", Unit: "ms", LowerIsBetter: true},
		{Key: "res-p99", Label: "registered → resolvable p99", Unit: "ms", LowerIsBetter: true},
		{Key: "addres-p50", Label: "ADD start → resolvable p50", Unit: "ms", LowerIsBetter: true},
		{Key: "addres-p99", Label: "ADD start → resolvable p99", Unit: "ms", LowerIsBetter: true},
	},
	Needs:  []string{"ip", "dnsperf", "dnsmasq"},
	Budget: 3 * time.Minute, QuickBudget: 75 * time.Second,
	Run: runDNS,
}

const dnsRecords = 1000

func runDNS(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	ds, err := harness.StartDatastore(ctx, env)
	if err != nil {
		return err
	}
	if err := ds.Apply(ctx, harness.Pool("bench", "10.90.0.0/16", 26, "")); err != nil {
		return err
	}
	var rs []api.Resource
	rs = append(rs, &api.Node{ObjectMeta: api.ObjectMeta{Name: "agent-1"}, Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: "10.0.1.11/24"}}})
	var queries, hostRecords strings.Builder
	for i := range dnsRecords {
		ip := fmt.Sprintf("10.96.%d.%d", i>>8, i&255)
		w := fmt.Sprintf("svc-%d", i)
		rs = append(rs, &api.WorkloadEndpoint{ObjectMeta: api.ObjectMeta{Name: api.WorkloadEndpointName("agent-1", "cni", w, "eth0"), Namespace: "default"},
			Spec: api.WorkloadEndpointSpec{Orchestrator: "cni", Node: "agent-1", Workload: w, ContainerID: "c" + w, Endpoint: "eth0",
				InterfaceName: fmt.Sprintf("tby%011x", i), IPNetworks: []string{ip + "/32"}}})
		fmt.Fprintf(&queries, "svc-%d.default.mesos A\n", i)
		fmt.Fprintf(&hostRecords, "--host-record=svc-%d.default.mesos,%s\n", i, ip)
	}
	for i := range dnsRecords / 10 {
		fmt.Fprintf(&queries, "nope-%d.default.mesos A\n", i)
	}
	if err := ds.CreateAll(ctx, rs, 8); err != nil {
		return err
	}
	qfile := filepath.Join(env.Tmp, "queries")
	if err := os.WriteFile(qfile, []byte(queries.String()), 0o644); err != nil {
		return err
	}
	hostsDir := filepath.Join(env.Tmp, "hostsdir")
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		return err
	}
	ns := env.Name("dns")
	nsPath, err := env.J.Namespace(ns)
	if err != nil {
		return err
	}
	const tabbyAddr, dnsmasqAddr = "127.0.0.1:5353", "127.0.0.1:5354"
	if _, err := env.J.StartProc("tabby dns", ns, []string{filepath.Join(env.Bin, "tabby"), "dns", "--datastore", ds.URL,
		"--listen", tabbyAddr, "--http-listen", "127.0.0.1:8123", "--upstream", "", "--log-level", "warn"}, filepath.Join(env.Tmp, "dns.log")); err != nil {
		return err
	}
	args := []string{"dnsmasq", "--keep-in-foreground", "--no-daemon", "--port=5354", "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--no-poll", "--cache-size=0", "--log-facility=/dev/null", "--hostsdir=" + hostsDir}
	args = append(args, strings.Fields(hostRecords.String())...)
	if _, err := env.J.StartProc("dnsmasq", ns, args, filepath.Join(env.Tmp, "dnsmasq.log")); err != nil {
		return err
	}
	last := fmt.Sprintf("svc-%d.default.mesos.", dnsRecords-1)
	for _, a := range []string{tabbyAddr, dnsmasqAddr} {
		if _, err := resolveWait(ctx, nsPath, a, last, 60*time.Second); err != nil {
			return fmt.Errorf("server %s: %w", a, err)
		}
	}

	// The ADD → resolvable half needs an agent.
	h, err := harness.StartHost(ctx, env, ds, "dnshost", "10.200.0.1/24", "--disable-routing")
	if err != nil {
		return err
	}
	cniDir, err := harness.CNIDir(env)
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{cniDir}, filepath.Join(env.Tmp, "cni-cache"), nil)
	list, err := h.ConfList("net1", nil)
	if err != nil {
		return err
	}
	cns := env.Name("c")
	cpath, err := env.J.Namespace(cns)
	if err != nil {
		return err
	}
	secs := harness.Pick(env, 8, 3)
	samples := harness.Pick(env, 20, 10)
	for r := 1; r <= env.Rounds; r++ {
		for _, sys := range harness.Order(r, report.Tabby, "dnsmasq") {
			addr := map[string]string{report.Tabby: tabbyAddr, "dnsmasq": dnsmasqAddr}[sys]
			qps, lat, lost, err := dnsperf(ctx, ns, addr, qfile, secs)
			if err != nil {
				return fmt.Errorf("%s: %w", sys, err)
			}
			rec.Add("qps", sys, r, qps)
			rec.Add("lat", sys, r, lat)
			if lost != "" && lost != "0" {
				rec.Note("round %d, %s: dnsperf lost %s queries", r, sys, lost)
			}
			var res, addres []float64
			for i := range samples {
				name := fmt.Sprintf("new-%d-%d", r, i)
				switch sys {
				case report.Tabby:
					a, t, err := addResolvable(ctx, cni, list, h.NSPath, cpath, nsPath, tabbyAddr, "bench-"+name)
					if err != nil {
						return err
					}
					addres, res = append(addres, ms(a)), append(res, ms(t))
				case "dnsmasq":
					f := filepath.Join(hostsDir, name)
					if err := os.WriteFile(f+".tmp", fmt.Appendf(nil, "10.97.%d.%d %s.default.mesos\n", r, i+1, name), 0o644); err != nil {
						return err
					}
					if err := os.Rename(f+".tmp", f); err != nil {
						return err
					}
					d, err := resolveWait(ctx, nsPath, dnsmasqAddr, name+".default.mesos.", 10*time.Second)
					if err != nil {
						return fmt.Errorf("dnsmasq hostsdir: %w", err)
					}
					res = append(res, ms(d))
				}
			}
			rec.Add("res-p50", sys, r, stats.Percentile(res, 50))
			rec.Add("res-p99", sys, r, stats.Percentile(res, 99))
			rec.Dist("resolvable", "registered → resolvable", "ms", sys, res)
			if len(addres) > 0 {
				rec.Add("addres-p50", sys, r, stats.Percentile(addres, 50))
				rec.Add("addres-p99", sys, r, stats.Percentile(addres, 99))
			}
		}
		env.Log.Info("round", "round", r)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// addResolvable attaches a container with CNI ADD, waits until its name
// answers, and detaches it; it returns ADD start → resolvable and ADD
// return → resolvable.
func addResolvable(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, hostNS, cpath, dnsNS, server, id string) (time.Duration, time.Duration, error) {
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: cpath, IfName: "eth0"}
	var t0, t1 time.Time
	err := netns.Do(hostNS, func() error {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		t0 = time.Now()
		_, err := cni.AddNetworkList(actx, list, rt)
		t1 = time.Now()
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("ADD: %w", err)
	}
	_, werr := resolveWait(ctx, dnsNS, server, id+".default.mesos.", 10*time.Second)
	t2 := time.Now()
	derr := netns.Do(hostNS, func() error {
		dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return cni.DelNetworkList(dctx, list, rt)
	})
	if werr != nil {
		return 0, 0, werr
	}
	if derr != nil {
		return 0, 0, fmt.Errorf("DEL: %w", derr)
	}
	return t2.Sub(t0), t2.Sub(t1), nil
}

// resolveWait queries name (A) at server from inside the namespace at
// nsPath every millisecond until it has an answer, and returns how long
// that took.
func resolveWait(ctx context.Context, nsPath, server, name string, d time.Duration) (time.Duration, error) {
	var took time.Duration
	err := netns.Do(nsPath, func() error {
		c := &mdns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
		q := new(mdns.Msg).SetQuestion(name, mdns.TypeA)
		t0 := time.Now()
		for {
			m, _, err := c.ExchangeContext(ctx, q, server)
			if err == nil && len(m.Answer) > 0 {
				took = time.Since(t0)
				return nil
			}
			if time.Since(t0) > d || ctx.Err() != nil {
				return fmt.Errorf("%s did not resolve at %s within %s (last error %v)", name, server, d, err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	return took, err
}

var (
	qpsRe  = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	latRe  = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+)`)
	lostRe = regexp.MustCompile(`Queries lost:\s+([0-9]+)`)
)

// dnsperf runs dnsperf in ns against addr and returns queries/s, average
// latency (ms) and the lost count.
func dnsperf(ctx context.Context, ns, addr, qfile string, secs int) (float64, float64, string, error) {
	host, port, _ := strings.Cut(addr, ":")
	cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+30)*time.Second)
	defer cancel()
	out, err := harness.Run(cctx, harness.InNS(ns, "dnsperf", "-s", host, "-p", port, "-d", qfile, "-l", strconv.Itoa(secs), "-c", "4", "-q", "200", "-t", "2")...)
	if err != nil {
		return 0, 0, "", fmt.Errorf("dnsperf: %w", err)
	}
	m := qpsRe.FindSubmatch(out)
	if m == nil {
		return 0, 0, "", fmt.Errorf("no QPS in dnsperf output:\n%s", out)
	}
	qps, _ := strconv.ParseFloat(string(m[1]), 64)
	var lat float64
	if l := latRe.FindSubmatch(out); l != nil {
		lat, _ = strconv.ParseFloat(string(l[1]), 64)
	}
	lost := ""
	if l := lostRe.FindSubmatch(out); l != nil {
		lost = string(l[1])
	}
	return qps, lat * 1000, lost, nil
}
