package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/api"
)

// PolicyDriver programs a compiled ruleset into the kernel.
type PolicyDriver interface {
	Apply(ctx context.Context, rs *policy.Ruleset) error
	FlushConntrack(addrs []netip.Addr) error
	// Current reports whether the kernel still holds exactly what the
	// last Apply committed.
	Current() bool
}

// KernelDataplane is the production Dataplane: nftables policy (and, with
// routing, kernel routes and BGP).
type KernelDataplane struct {
	mu           sync.Mutex
	lastWarnings string
	quarantined  []policy.Quarantine

	stats PolicyStats

	engineMu sync.Mutex // Sync and Update: one at a time
	engine   *policy.Engine

	Policy PolicyDriver // nil: policy disabled
	Router Router       // nil: routing disabled
	Log    *slog.Logger
	// Form is the shape of the programmed table: PolicyFormFlat (the
	// default) or PolicyFormReference (policy.Compile's output as is).
	Form string
	// Flows, when set, is told every programmed state and rewrites the
	// ruleset to log denies (flows.go).
	Flows FlowObserver
	// DNS, when set, makes the table intercept the local workloads' DNS
	// for the egress-by-name forwarder (internal/agent/dnspolicy).
	DNS *policy.DNSPolicy
}

// The table forms KernelDataplane can program (see
// docs/design/policy.md "Flat cost per new connection").
const (
	PolicyFormFlat      = "flat"
	PolicyFormReference = "reference"
)

// PolicyStats describes the last programmed table.
type PolicyStats struct {
	Policies int // policies and profiles applying to this host's endpoints
	Chains   int
	Rules    int
}

// Router receives the routing part of every view; it programs routes on
// its own goroutines, so Update must not block.
type Router interface {
	Update(in *routing.Input)
}

// RoutingInput turns a view into the router's input (the router adds the
// IPAM affinities it watches itself).
func RoutingInput(v *View) *routing.Input {
	return &routing.Input{
		Node:      v.Node,
		NodeIP:    v.NodeIP,
		Nodes:     v.Nodes,
		Pools:     v.Pools,
		BGPConfig: v.BGPConfig,
		Peers:     v.BGPPeers,
		Felix:     v.Felix,
	}
}

var _ Dataplane = (*KernelDataplane)(nil)

// PolicyState turns a view into the policy compiler's input.
func PolicyState(v *View) *policy.State {
	s := &policy.State{
		Node:              v.Node,
		Endpoints:         v.Endpoints,
		HostEndpoints:     v.HostEndpoints,
		Profiles:          v.Profiles,
		Policies:          v.Policies,
		GlobalPolicies:    v.GlobalPolicies,
		Tiers:             v.Tiers,
		NetworkSets:       v.NetworkSets,
		GlobalNetworkSets: v.GlobalNetworkSets,
		Namespaces:        v.Namespaces,
		Pools:             v.Pools,
		Felix:             v.Felix,
	}
	if v.NodeIP.IsValid() {
		s.NodeIPs = []netip.Addr{v.NodeIP.Addr()}
	}
	return s
}

// Sync hands the view to the router and compiles and programs the policy
// of this host.
func (d *KernelDataplane) Sync(ctx context.Context, v *View) error {
	if d.Router != nil {
		d.Router.Update(RoutingInput(v))
	}
	if d.Policy == nil {
		return nil
	}
	d.engineMu.Lock()
	defer d.engineMu.Unlock()
	if d.engine == nil {
		d.engine = policy.NewEngine(d.Form != PolicyFormReference)
	}
	st := PolicyState(v)
	st.DNS = d.DNS
	rs, err := d.engine.Full(st)
	if err != nil {
		return err
	}
	if d.Flows != nil {
		d.Flows.PolicyState(st, stagedOf(v))
	}
	d.logWarnings(rs.Warnings)
	d.noteQuarantine(rs.Quarantined)
	return d.apply(ctx, rs, PolicyStats{Policies: d.engine.PolicyCount()})
}

// Update programs datastore changes without a view, when they are
// changes the policy engine takes without a compile (remote endpoints and
// network sets as set elements, policies that select nothing here: see
// policy.Engine). handled is false, and
// nothing is done, for any other change or before the first Sync: the
// caller then Syncs. Routing reads none of those kinds.
func (d *KernelDataplane) Update(ctx context.Context, changes []policy.Change) (handled bool, err error) {
	if d.Policy == nil {
		return routingIgnores(changes), nil
	}
	d.engineMu.Lock()
	defer d.engineMu.Unlock()
	if d.engine == nil {
		return false, nil
	}
	if slices.ContainsFunc(changes, policy.DomainsChanged) {
		// Which patterns feed a learned set is a full compile's to say.
		return false, nil
	}
	rs, ok := d.engine.Update(changes)
	if !ok {
		return false, nil
	}
	if d.Flows != nil {
		d.Flows.PolicyChanges(changes)
	}
	return true, d.apply(ctx, rs, PolicyStats{Policies: d.engine.PolicyCount()})
}

// routingIgnores reports whether the router needs none of the changes.
func routingIgnores(changes []policy.Change) bool {
	for _, ch := range changes {
		r := ch.New
		if r == nil {
			r = ch.Old
		}
		switch r.(type) {
		case *api.WorkloadEndpoint, *api.NetworkSet, *api.GlobalNetworkSet, *api.NetworkPolicy, *api.GlobalNetworkPolicy:
		default:
			return false
		}
	}
	return true
}

// apply programs rs and records what it holds.
func (d *KernelDataplane) apply(ctx context.Context, rs *policy.Ruleset, st PolicyStats) error {
	if d.Flows != nil {
		rs = d.Flows.Programmed(rs)
	}
	st.Chains = len(rs.Chains)
	for _, c := range rs.Chains {
		st.Rules += len(c.Rules)
	}
	if err := d.Policy.Apply(ctx, rs); err != nil {
		return err
	}
	d.mu.Lock()
	d.stats = st
	d.mu.Unlock()
	return nil
}

// PolicyStats returns what the last successful Sync programmed.
func (d *KernelDataplane) PolicyStats() PolicyStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// noteQuarantine keeps the last compile's quarantined policies and logs
// each one when it enters or leaves quarantine.
func (d *KernelDataplane) noteQuarantine(qs []policy.Quarantine) {
	d.mu.Lock()
	old := d.quarantined
	d.quarantined = qs
	d.mu.Unlock()
	if d.Log == nil {
		return
	}
	was := map[policy.Quarantine]bool{}
	for _, q := range old {
		was[q] = true
	}
	for _, q := range qs {
		if !was[q] {
			d.Log.Error("policy quarantined: the endpoints it selects are denied in its directions until it is fixed",
				"policy", q.ID(), "reason", q.Reason)
		}
		delete(was, q)
	}
	for q := range was {
		d.Log.Info("policy no longer quarantined", "policy", q.ID())
	}
}

// Quarantined returns the policies the last compile quarantined.
func (d *KernelDataplane) Quarantined() []policy.Quarantine {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.quarantined
}

// Current reports whether the kernel's policy is what the last Sync
// programmed (routes are the router's, which re-checks them itself).
func (d *KernelDataplane) Current() bool {
	return d.Policy == nil || d.Policy.Current()
}

// logWarnings logs the compiler's warnings when they change (not on every
// sync).
func (d *KernelDataplane) logWarnings(ws []string) {
	joined := strings.Join(ws, "\n")
	d.mu.Lock()
	changed := joined != d.lastWarnings
	d.lastWarnings = joined
	d.mu.Unlock()
	if !changed || d.Log == nil {
		return
	}
	for _, w := range ws {
		d.Log.Warn("policy", "warning", w)
	}
}

// EndpointGone flushes conntrack entries of a removed endpoint's addresses.
func (d *KernelDataplane) EndpointGone(_ context.Context, addrs []netip.Addr) {
	if d.Policy == nil {
		return
	}
	if err := d.Policy.FlushConntrack(addrs); err != nil && d.Log != nil {
		d.Log.Warn("flush conntrack failed", "addrs", addrs, "error", err)
	}
}
