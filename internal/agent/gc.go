package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/ipam"
)

// ipamGC collects leaked IPAM state on a timer. Every agent runs a node
// pass over its own blocks (reading only its affinities and those blocks;
// which handles and nodes are live comes from the watch cache). The one
// agent its Elector elects runs the cluster-wide pass instead, which
// covers its own node too and also releases deleted nodes' blocks and
// affinities, unaffine blocks, missing affinities and empty handle
// records, then deletes deleted nodes' endpoints. Datastore reads per
// interval are so O(own blocks) per agent plus O(cluster) once, instead of
// O(cluster) per agent.
type ipamGC struct {
	node     string
	ipam     *ipam.IPAM
	elector  Elector
	interval time.Duration
	grace    time.Duration // 0: IPAMConfig's leakGracePeriod
	log      *slog.Logger
	// live returns the live handles and nodes as the agent sees them.
	live func() (handles, nodes map[string]bool)
	// keep marks allocations that are never leaks.
	keep func(attrs map[string]string) bool
	// afterCluster runs after each cluster-wide pass.
	afterCluster func(ctx context.Context)
	// done is told of every pass: its scope ("node", "cluster") and report.
	done func(scope string, rep ipam.GCReport, err error)
}

// Run campaigns and collects until ctx ends; the elector stops with it.
func (g *ipamGC) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		if err := g.elector.Run(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("IPAM GC election stopped; collecting this node only", "error", err)
		}
	})
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		g.pass(ctx)
	}
}

// pass runs one GC pass: cluster-wide when leading, else this node's.
func (g *ipamGC) pass(ctx context.Context) {
	scope := "node"
	opts := ipam.GCOptions{Node: g.node, Keep: g.keep, Grace: g.grace,
		LiveHandles: func(context.Context) (map[string]bool, error) { h, _ := g.live(); return h, nil },
		LiveNodes:   func(context.Context) (map[string]bool, error) { _, n := g.live(); return n, nil },
		// Before releasing anything, read the endpoints themselves: the
		// cache may lag, or lack an endpoint whose record is unreadable
		// (then the read fails and nothing is released).
		RecheckHandles: g.ipam.LiveHandles,
	}
	if g.elector.Leader() {
		// Cluster-wide: authoritative datastore reads, by one agent.
		scope, opts = "cluster", ipam.GCOptions{Keep: g.keep, Grace: g.grace}
	}
	rep, err := g.ipam.GC(ctx, opts)
	if err != nil && ctx.Err() == nil {
		g.log.Warn("IPAM GC failed", "scope", scope, "error", err)
	}
	if err == nil && scope == "cluster" && g.afterCluster != nil {
		g.afterCluster(ctx)
	}
	if g.done != nil {
		g.done(scope, rep, err)
	}
}

// newIPAMGC wires the agent's GC: live sets from its cache, its metrics.
func (a *Agent) newIPAMGC() *ipamGC {
	el := a.cfg.Elector
	if el == nil {
		el = soleElector{}
	}
	return &ipamGC{
		node: a.cfg.Node, ipam: a.ipam, elector: el, interval: a.cfg.GCInterval,
		log:          a.log,
		live:         a.cacheLiveSets,
		keep:         func(attrs map[string]string) bool { return attrs[ipam.AttrType] == ipamOnlyType },
		afterCluster: a.deleteOrphanEndpoints,
		done: func(scope string, rep ipam.GCReport, err error) {
			if err != nil {
				return
			}
			a.m.gcPasses.WithLabelValues(scope).Inc()
			if n := len(rep.Released); n > 0 {
				a.m.gcReleased.Add(float64(n))
				a.log.Info("IPAM GC released leaked addresses", "scope", scope, "count", n, "blocksReleased", len(rep.BlocksReleased))
			}
		},
	}
}

// cacheLiveSets returns the live handles and nodes from the watch cache.
func (a *Agent) cacheLiveSets() (map[string]bool, map[string]bool) {
	nodes := map[string]bool{}
	for _, n := range listOf[*api.Node](a.cache, "Node") {
		nodes[n.Name] = true
	}
	return ipam.LiveHandlesOf(nodes, listOf[*api.WorkloadEndpoint](a.cache, "WorkloadEndpoint")), nodes
}
