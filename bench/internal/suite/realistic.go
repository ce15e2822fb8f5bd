package suite

import (
	"context"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/internal/api"
)

// PolicyRealistic is the realistic variant of the connection-rate figure
// of PolicyThroughput: the server is selected by 13 of 1,000 policies,
// whose rules alternate allows and denies, and the client's allow sits in
// the middle of them.
var PolicyRealistic = harness.Benchmark{
	ID:    "policy-realistic",
	Title: "New connections, realistic policy",
	What: `New TCP connections per second (connect, 1 byte each way, close; 4 loops) between two containers
on one Tabby host. 1,000 NetworkPolicies of 10 rules, each selecting the containers that carry one
of 80 tags; the server carries one, so 13 policies select it. Every third rule denies
192.0.2.0/24, the others allow an app label of the 2,000 other endpoints to a port of their own;
the client's allow is a rule in the middle of the seventh of the server's policies.`,
	Baseline: `**no policy**: the routed veth path built by hand, no ruleset (the physical floor); **floor**:
that path with the least a stateful policy can do — conntrack's established accept, one set
lookup of the destination, accept; **Tabby, no policy**: a second Tabby host on the same datastore
whose containers no policy selects.`,
	Method: `Each round visits every configuration, order alternating between rounds; ratios pair Tabby
with each baseline in the same round.`,
	Systems: []report.System{{Key: report.Tabby, Label: "Tabby, 13 of 1,000 policies"}, {Key: "veth", Label: "no policy", Baseline: true},
		{Key: "floor", Label: "floor: ct + one set lookup", Baseline: true}, {Key: "open", Label: "Tabby, no policy", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "cps", Label: "new connections", Unit: "1/s"},
		{Key: "crr-p50", Label: "connection p50", Unit: "µs", LowerIsBetter: true},
		{Key: "crr-p99", Label: "connection p99", Unit: "µs", LowerIsBetter: true},
	},
	Needs:  []string{"ip", "nft", "ping", "ss"},
	Budget: 6 * time.Minute, QuickBudget: 90 * time.Second,
	Run: runPolicyRealistic,
}

const (
	realisticTags   = 80
	realisticTag    = 7
	realisticGhosts = 2000
	crrPort         = 7000
)

func runPolicyRealistic(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	routed, ds, cni, err := policyRig(ctx, env)
	if err != nil {
		return err
	}
	pairs := map[string]pair{"veth": {routed.C1, routed.C2, routed.IP2}, "floor": {routed.C1, routed.C2, routed.IP2}}
	for i, sys := range []string{report.Tabby, "open"} {
		h, err := harness.StartHost(ctx, env, ds, "real"+sys, fmt.Sprintf("10.200.0.%d/24", i+1), "--disable-routing")
		if err != nil {
			return err
		}
		group := map[string]string{report.Tabby: "real", "open": "open"}[sys]
		var cs [2]*harness.Container
		for k, role := range []string{"client", "server"} {
			labels := map[string]string{"bench": group, "role": role, "app": "web"}
			if role == "server" {
				labels[fmt.Sprintf("t%02d", realisticTag)] = "yes"
			}
			list, err := h.ConfList("net1", labels)
			if err != nil {
				return err
			}
			if cs[k], err = harness.Attach(ctx, env, cni, list, h.NSPath, sys+"-"+role); err != nil {
				return err
			}
		}
		pairs[sys] = pair{cs[0].NS, cs[1].NS, cs[1].IP}
		if sys != report.Tabby {
			continue
		}
		policies, selecting := realisticPolicySet(scalePolicies)
		env.Log.Info("writing policies and endpoints", "policies", len(policies), "selecting the server", selecting, "endpoints", realisticGhosts)
		t0 := time.Now()
		if err := ds.CreateAll(ctx, ghostEndpoints(realisticGhosts, 92), 8); err != nil {
			return err
		}
		if err := ds.CreateAll(ctx, policies, 8); err != nil {
			return err
		}
		probe, err := env.J.NewProbe(h.NS)
		if err != nil {
			return err
		}
		probe.AgentHTTP = harness.AgentHTTP
		c, err := waitProgrammed(ctx, probe, selecting, 0, harness.Pick(env, 4*time.Minute, 2*time.Minute))
		if err != nil {
			return err
		}
		rec.Note("Tabby's table: %d policies apply on the host, in %d rules (programmed %s after the first write).",
			c.Policies, c.Rules, time.Since(t0).Round(time.Second))
	}
	for _, p := range []pair{pairs["veth"], pairs[report.Tabby], pairs["open"]} {
		if _, err := crrServer(env, p.server, fmt.Sprintf("%s:%d", p.serverIP, crrPort)); err != nil {
			return err
		}
	}
	floor := fmt.Sprintf(`table inet floor {
	set servers { type ipv4_addr; elements = { %s } }
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ip daddr @servers accept
		ip saddr @servers accept
	}
}
`, routed.IP2)
	crrDur := harness.Pick(env, 2*time.Second, time.Second)
	for r := 1; r <= env.Rounds; r++ {
		for _, sys := range harness.Order(r, report.Tabby, "veth", "floor", "open") {
			switch sys {
			case "veth":
				err = harness.LoadRules(ctx, env, routed.Host, "nft", "")
			case "floor":
				err = harness.LoadRules(ctx, env, routed.Host, "nft", floor)
			}
			if err != nil {
				return err
			}
			p := pairs[sys]
			c, err := crr(ctx, env, p.client, fmt.Sprintf("%s:%d", p.serverIP, crrPort), crrDur, 4)
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

// realisticPolicySet is n policies, policy i selecting bench == 'real'
// endpoints with tag t<i % realisticTags>, in order i: every third rule
// denies 192.0.2.0/24 to a port, the others allow an app label to a port
// of their own; the middle one of the server's policies also allows the
// client to crrPort. It returns the policies and how many select the
// server.
func realisticPolicySet(n int) ([]api.Resource, int) {
	var mine []int
	for i := range n {
		if i%realisticTags == realisticTag {
			mine = append(mine, i)
		}
	}
	middle := mine[len(mine)/2]
	var out []api.Resource
	for i := range n {
		var rules []api.Rule
		for j := range rulesPerPolicy {
			r := api.Rule{Action: "Allow", Protocol: proto(api.ProtocolTCP),
				Source:      api.EntityRule{Selector: fmt.Sprintf("app == '%s'", appLabels[(i+j)%len(appLabels)])},
				Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + 10*(i%100) + j))}}}
			if j%3 == 0 {
				r = api.Rule{Action: "Deny", Protocol: proto(api.ProtocolTCP), Source: api.EntityRule{Nets: []string{"192.0.2.0/24"}},
					Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(uint16(10000 + j))}}}
			}
			rules = append(rules, r)
			if i == middle && j == rulesPerPolicy/2 {
				rules = append(rules, api.Rule{Action: "Allow", Protocol: proto(api.ProtocolTCP), Source: api.EntityRule{Selector: "role == 'client'"},
					Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(crrPort)}}})
			}
		}
		order := float64(i)
		out = append(out, &api.NetworkPolicy{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("real-%04d", i), Namespace: scaleNamespace},
			Spec: api.NetworkPolicySpec{Order: &order, Selector: fmt.Sprintf("bench == 'real' && has(t%02d)", i%realisticTags),
				Types: []string{"Ingress"}, Ingress: rules}})
	}
	return out, len(mine)
}
