package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
)

// Simulation is the simulated scale run (issue 15 item 6): tabby-sim
// (internal/agent/simscale) in its own process, real agents against one
// etcd with in-memory kernels.
var Simulation = harness.Benchmark{
	ID:    "sim",
	Title: "Simulated scale: 200 nodes, 20,000 endpoints, 5,000 policies (simulated)",
	What: `**Simulated.** ` + "`tabby-sim`" + ` runs real agents (the watched cache with typed deltas, the dataplane
loop, the incremental policy engine, node registration and heartbeats) in one process against one
embedded etcd; each agent's kernel is an in-memory driver that keeps the rulesets it is given. The
cluster: 200 nodes of 100 endpoints (1,000 apps of 20 endpoints spread over the nodes), 5,000
NetworkPolicies of 5 rules (5 per app, each admitting other apps on 5 ports). Churn: an endpoint
added, the one added before deleted, a policy added, in turn, 20 ms apart. Of the 200 nodes, 20
run an agent (quick mode: 40 nodes, 4 running) — at this cluster size one agent holds about 90 MiB and a full
compile takes about 0.2 s, and 200 of them would measure this machine's two cores, not the
design — and the other 180 are their endpoints in the datastore; every figure is per running agent.`,
	Baseline: `The same simulation at one tenth of the cluster: 20 nodes of 100 endpoints (2,000 endpoints, 500
policies), every node running an agent. The ratio says how the cost per agent grows with the size
of the cluster at the same density per node (1.0 is flat).`,
	Method: `Event → programmed is the time from the datastore write to the ruleset, handed to an agent's
driver, holding the new address in a selector set (delete: no longer holding it), on every running
agent whose policies admit the endpoint's app ("all": the slowest of them per event). CPU is the
process's CPU time during the churn per running agent per event; memory is the heap in use by the
agents after their first sync per agent; etcd requests are the agents' requests during the churn per
event (the agents watch: a write reaches them as watch events, not requests). At the end the last
ruleset of three agents is compared with a full compile of the final datastore state.`,
	Systems: []report.System{{Key: report.Tabby, Label: "200 nodes (simulated)"}, {Key: "small", Label: "20 nodes (simulated)", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "add-p50", Label: "endpoint add → programmed, p50 (agent, event)", Unit: "ms", LowerIsBetter: true},
		{Key: "add-p99", Label: "endpoint add → programmed, p99 (agent, event)", Unit: "ms", LowerIsBetter: true},
		{Key: "add-all-p99", Label: "endpoint add → programmed on all, p99", Unit: "ms", LowerIsBetter: true},
		{Key: "cpu", Label: "CPU per agent per event", Unit: "ms", LowerIsBetter: true},
		{Key: "heap", Label: "heap per agent", Unit: "MiB", LowerIsBetter: true},
		{Key: "rules", Label: "rules per agent", Unit: "rules", LowerIsBetter: true},
		{Key: "etcd", Label: "agents' etcd requests per event", Unit: "req", LowerIsBetter: true},
	},
	Budget: 12 * time.Minute, QuickBudget: 35 * time.Second,
	Run: runSimulation,
}

type simResult struct {
	RulesPerAgent, AddP50Ms, AddP99Ms, AddAllP99Ms float64
	CPUPerAgentMsPerEvent, HeapPerAgentMiB         float64
	EtcdRequestsPerEvent                           float64
	FullCompileChecked                             int
	IncrementalSyncs, FullSyncs                    int64
}

func runSimulation(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	bin := filepath.Join(env.Bin, "tabby-sim")
	events := harness.Pick(env, 150, 30)
	for r := 1; r <= min(env.Rounds, harness.Pick(env, 2, 1)); r++ {
		for _, sys := range harness.Order(r, report.Tabby, "small") {
			args := []string{bin, "--events", strconv.Itoa(events), "--dir", filepath.Join(env.Tmp, fmt.Sprintf("sim-%s-%d", sys, r))}
			// Quick mode: a fifth of the cluster (40 nodes, 4 running
			// agents; the baseline 10 nodes).
			nodes := harness.Pick(env, 200, 40)
			if sys != report.Tabby {
				nodes = harness.Pick(env, 20, 10)
			}
			args = append(args, "--agents", strconv.Itoa(nodes), "--endpoints", strconv.Itoa(100*nodes), "--policies", strconv.Itoa(25*nodes))
			if sys == report.Tabby {
				args = append(args, "--running", strconv.Itoa(harness.Pick(env, 20, 4)))
			}
			out, err := harness.Run(ctx, args...)
			if err != nil {
				return err
			}
			var res simResult
			if err := json.Unmarshal(out, &res); err != nil {
				return fmt.Errorf("tabby-sim output: %w", err)
			}
			if res.FullCompileChecked == 0 {
				return fmt.Errorf("tabby-sim checked no agent against a full compile")
			}
			for k, v := range map[string]float64{"add-p50": res.AddP50Ms, "add-p99": res.AddP99Ms, "add-all-p99": res.AddAllP99Ms,
				"cpu": res.CPUPerAgentMsPerEvent, "heap": res.HeapPerAgentMiB, "rules": res.RulesPerAgent, "etcd": res.EtcdRequestsPerEvent} {
				rec.Add(k, sys, r, v)
			}
			rec.Note("%s round %d: %d incremental and %d full syncs over the agents; %d agents' last rulesets equal a full compile",
				sys, r, res.IncrementalSyncs, res.FullSyncs, res.FullCompileChecked)
		}
	}
	return nil
}
