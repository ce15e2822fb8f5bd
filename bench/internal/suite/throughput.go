package suite

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
)

// PolicyThroughput is "throughput under 10,000 rules and 10,000 endpoints
// in sets", against no policy and a linear iptables chain of the same size.
var PolicyThroughput = harness.Benchmark{
	ID:    "policy-throughput",
	Title: "Throughput under 10,000 rules",
	What: `TCP between two containers on one host, through the host's forward path (container → host
namespace → container, /32 routes and proxy-ARP). **Tabby**: a tabby agent with 1,000
NetworkPolicies of 10 rules each (10,000 rules) selecting the server, whose selectors match 10,000
other endpoints (so the agent's nftables sets hold 10,000 addresses); one more policy allows the
client. Measured: iperf3 with 1 and 4 streams, and new TCP connections per second (connect, 1 byte
each way, close; 4 loops) — the per-new-flow cost that bulk throughput hides behind conntrack.`,
	Baseline: `**no policy**: the same routed veth path built by hand, no ruleset at all (the physical floor);
**iptables linear 10k**: that path with 10,000 non-matching rules in one iptables FORWARD chain behind
a conntrack ESTABLISHED,RELATED accept, as Calico's iptables data plane emits them;
**iptables linear 10k, no ct** (full mode): the same rules without the conntrack shortcut (machine
baseline B1: 0.17× on one stream); **Tabby, no policy**: a second Tabby host on the same datastore
whose containers no policy selects (Tabby's base ruleset).`,
	Method: `Each round visits every configuration (order alternating between rounds): iperf3 1 stream,
4 streams, then the connection-rate client. Ratios pair Tabby with each baseline in the same round.`,
	Systems: []report.System{{Key: report.Tabby, Label: "Tabby 10k rules"}, {Key: "veth", Label: "no policy", Baseline: true},
		{Key: "ipt", Label: "iptables linear 10k", Baseline: true}, {Key: "iptnoct", Label: "iptables linear 10k, no ct", Baseline: true},
		{Key: "open", Label: "Tabby, no policy", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "gbps-1", Label: "TCP, 1 stream", Unit: "Gbit/s"},
		{Key: "gbps-4", Label: "TCP, 4 streams", Unit: "Gbit/s"},
		{Key: "cps", Label: "new connections", Unit: "1/s"},
		{Key: "crr-p50", Label: "connection p50", Unit: "µs", LowerIsBetter: true},
		{Key: "crr-p99", Label: "connection p99", Unit: "µs", LowerIsBetter: true},
	},
	Needs:  []string{"ip", "iperf3", "nft", "iptables-restore", "ping", "ss"},
	Budget: 9 * time.Minute, QuickBudget: 150 * time.Second,
	Run: runPolicyThroughput,
}

// pair is a client and server namespace with the server's address.
type pair struct {
	client, server, serverIP string
}

// policyRig is what the policy benchmarks share: the hand-built routed
// veth path, a datastore with the bench pool, and a CNI client.
func policyRig(ctx context.Context, env *harness.Env) (*harness.Routed, *harness.Datastore, *libcni.CNIConfig, error) {
	routed, err := harness.NewRouted(env)
	if err != nil {
		return nil, nil, nil, err
	}
	ds, err := harness.StartDatastore(ctx, env)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := ds.Apply(ctx, harness.Pool("bench", "10.90.0.0/16", 26, "")); err != nil {
		return nil, nil, nil, err
	}
	cniDir, err := harness.CNIDir(env)
	if err != nil {
		return nil, nil, nil, err
	}
	return routed, ds, libcni.NewCNIConfigWithCacheDir([]string{cniDir}, filepath.Join(env.Tmp, "cni-cache"), nil), nil
}

func runPolicyThroughput(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	routed, ds, cni, err := policyRig(ctx, env)
	if err != nil {
		return err
	}
	pairs := map[string]pair{"veth": {routed.C1, routed.C2, routed.IP2}, "ipt": {routed.C1, routed.C2, routed.IP2}, "iptnoct": {routed.C1, routed.C2, routed.IP2}}
	for i, sys := range []string{report.Tabby, "open"} {
		h, err := harness.StartHost(ctx, env, ds, "bench"+sys, fmt.Sprintf("10.200.0.%d/24", i+1), "--disable-routing")
		if err != nil {
			return err
		}
		group := map[string]string{report.Tabby: "policy", "open": "open"}[sys]
		var cs [2]*harness.Container
		for k, role := range []string{"client", "server"} {
			list, err := h.ConfList("net1", map[string]string{"bench": group, "role": role})
			if err != nil {
				return err
			}
			if cs[k], err = harness.Attach(ctx, env, cni, list, h.NSPath, sys+"-"+role); err != nil {
				return err
			}
		}
		pairs[sys] = pair{cs[0].NS, cs[1].NS, cs[1].IP}
		if sys == report.Tabby {
			env.Log.Info("writing policies and endpoints", "policies", scalePolicies+1, "endpoints", scaleEndpoints)
			t0 := time.Now()
			if err := ds.CreateAll(ctx, ghostEndpoints(scaleEndpoints, 91), 8); err != nil {
				return err
			}
			if err := ds.CreateAll(ctx, scalePolicySet(scalePolicies, "bench == 'policy'", 5201, 7000), 8); err != nil {
				return err
			}
			probe, err := env.J.NewProbe(h.NS)
			if err != nil {
				return err
			}
			probe.AgentHTTP = harness.AgentHTTP
			c, err := waitProgrammed(ctx, probe, scalePolicies+1, scaleEndpoints, harness.Pick(env, 6*time.Minute, 2*time.Minute))
			if err != nil {
				return err
			}
			rec.Note("Tabby's table: %d policies, %d rules, %d selector-set elements (programmed %s after the first write).",
				c.Policies, c.Rules, c.SetElements, time.Since(t0).Round(time.Second))
		}
	}
	for _, p := range []pair{pairs["veth"], pairs[report.Tabby], pairs["open"]} {
		if _, err := iperfServer(env, p.server, p.serverIP); err != nil {
			return err
		}
		if _, err := crrServer(env, p.server, p.serverIP+":7000"); err != nil {
			return err
		}
	}
	secs := harness.Pick(env, 3, 2)
	crrDur := harness.Pick(env, 2*time.Second, time.Second)
	systems := []string{report.Tabby, "veth", "ipt", "open"}
	if !env.Quick {
		systems = append(systems, "iptnoct")
	}
	for r := 1; r <= env.Rounds; r++ {
		for _, sys := range harness.Order(r, systems...) {
			switch sys {
			case "veth":
				err = harness.LoadRules(ctx, env, routed.Host, "ipt", "")
			case "ipt":
				err = harness.LoadRules(ctx, env, routed.Host, "ipt", harness.IptLinear(scalePolicies*rulesPerPolicy, true))
			case "iptnoct":
				err = harness.LoadRules(ctx, env, routed.Host, "ipt", harness.IptLinear(scalePolicies*rulesPerPolicy, false))
			}
			if err != nil {
				return err
			}
			p := pairs[sys]
			for _, streams := range []int{1, 4} {
				g, err := iperf(ctx, p.client, p.serverIP, secs, streams)
				if err != nil {
					return fmt.Errorf("%s: %w", sys, err)
				}
				rec.Add(fmt.Sprintf("gbps-%d", streams), sys, r, g)
			}
			c, err := crr(ctx, env, p.client, p.serverIP+":7000", crrDur, 4)
			if err != nil {
				return fmt.Errorf("%s: %w", sys, err)
			}
			rec.Add("cps", sys, r, c.PerSec)
			rec.Add("crr-p50", sys, r, c.P50)
			rec.Add("crr-p99", sys, r, c.P99)
		}
		env.Log.Info("round", "round", r)
	}
	return nil
}
