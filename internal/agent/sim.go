package agent

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// NewSimulated returns an agent for the simulated scale run
// (internal/agent/simscale). It runs every loop of a real agent against
// store — the watched cache with its typed deltas, the dataplane loop with
// the incremental policy engine, node registration, heartbeats, IPAM GC —
// and touches no kernel: pol receives every ruleset the kernel would, no
// interface is wired (every local endpoint in the datastore counts as
// wired, so reconcile keeps it), IP forwarding is left alone, the reaper
// sees nothing die, and there is no router. socket is the CNI socket's
// path (served, though the simulation sends no ADD).
func NewSimulated(node string, nodeIP netip.Prefix, socket string, store datastore.Store, pol PolicyDriver, log *slog.Logger) (*Agent, error) {
	dp := &KernelDataplane{Policy: pol, Log: log}
	a, err := New(Config{Node: node, NodeIP: nodeIP, Socket: socket}, store, nil, dp, log)
	if err != nil {
		return nil, err
	}
	a.wirer = simWirer{a}
	a.enableForwarding = func() error { return nil }
	a.reaper.kernel = simKernel{}
	return a, nil
}

// simWirer is the wiring of a simulated agent: the interface of every
// local endpoint in the cache exists; nothing is created or deleted.
type simWirer struct{ a *Agent }

func (w simWirer) Add(context.Context, endpoint.Config) (endpoint.Result, error) {
	return endpoint.Result{}, nil
}
func (w simWirer) Del(context.Context, string, string, string) error { return nil }
func (w simWirer) Check(context.Context, endpoint.Config) error      { return nil }
func (w simWirer) DeleteHostIf(context.Context, string) error        { return nil }

func (w simWirer) List(context.Context) ([]endpoint.HostEndpoint, error) {
	var out []endpoint.HostEndpoint
	for _, ep := range listOf[*api.WorkloadEndpoint](w.a.cache, "WorkloadEndpoint") {
		if ep.Spec.Node == w.a.cfg.Node {
			out = append(out, endpoint.HostEndpoint{Name: ep.Spec.InterfaceName, Up: true})
		}
	}
	return out, nil
}

// simKernel is the reaper's kernel in a simulation: no link is ever
// deleted and every namespace is alive.
type simKernel struct{}

func (simKernel) WatchLinkDeletes(ctx context.Context, _ func(string)) error {
	<-ctx.Done()
	return nil
}
func (simKernel) NetNSGone(string) (bool, error) { return false, nil }

// SyncCounts are the dataplane syncs so far by path: incremental (the
// engine's Update) and full.
func (a *Agent) SyncCounts() (incremental, full int64) {
	return counterValue(a.m.syncs.WithLabelValues("incremental")), counterValue(a.m.syncs.WithLabelValues("full"))
}

func counterValue(c prometheus.Counter) int64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return int64(m.GetCounter().GetValue())
}
