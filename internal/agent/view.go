package agent

import (
	"context"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

// View is the agent's current picture of the cluster, handed to the
// dataplane. It is a snapshot: the dataplane must not modify it.
type View struct {
	Node              string
	NodeIP            netip.Prefix
	Nodes             []*api.Node
	Pools             []*api.IPPool
	Endpoints         []*api.WorkloadEndpoint
	HostEndpoints     []*api.HostEndpoint
	Profiles          []*api.Profile
	Policies          []*api.NetworkPolicy
	GlobalPolicies    []*api.GlobalNetworkPolicy
	Tiers             []*api.Tier
	NetworkSets       []*api.NetworkSet
	GlobalNetworkSets []*api.GlobalNetworkSet
	Namespaces        []*api.Namespace
	// Staged policies are never enforced; flow logs show what they would
	// decide.
	StagedPolicies           []*api.StagedNetworkPolicy
	StagedGlobalPolicies     []*api.StagedGlobalNetworkPolicy
	StagedKubernetesPolicies []*api.StagedKubernetesNetworkPolicy
	Felix                    api.FelixConfigurationSpec
	BGPConfig                api.BGPConfigurationSpec
	BGPPeers                 []*api.BGPPeer
}

// pendingEndpoints are local endpoints whose ADD is in progress: included
// in the view before their WorkloadEndpoint is written, so policy is in
// place before the container's interface exists.
type pendingEndpoints struct {
	mu      sync.Mutex
	m       map[string]*api.WorkloadEndpoint // namespace/name → endpoint being added
	version uint64                           // bumped on every change
}

func (p *pendingEndpoints) add(w *api.WorkloadEndpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[objKey(w)] = w
	p.version++
}

func (p *pendingEndpoints) done(w *api.WorkloadEndpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, objKey(w))
	p.version++
}

func (p *pendingEndpoints) ver() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.version
}

// viewAt builds a snapshot from the cache, the pending endpoints and the
// tombstones of recently deleted ones, as of now; it also says when the
// next tombstone expires (zero: none).
func (a *Agent) viewAt(now time.Time) (*View, time.Time) {
	c := a.cache
	v := &View{
		Node:                     a.cfg.Node,
		NodeIP:                   a.nodeIP,
		Nodes:                    listOf[*api.Node](c, "Node"),
		Pools:                    listOf[*api.IPPool](c, "IPPool"),
		HostEndpoints:            listOf[*api.HostEndpoint](c, "HostEndpoint"),
		Profiles:                 listOf[*api.Profile](c, "Profile"),
		Policies:                 listOf[*api.NetworkPolicy](c, "NetworkPolicy"),
		GlobalPolicies:           listOf[*api.GlobalNetworkPolicy](c, "GlobalNetworkPolicy"),
		Tiers:                    listOf[*api.Tier](c, "Tier"),
		NetworkSets:              listOf[*api.NetworkSet](c, "NetworkSet"),
		GlobalNetworkSets:        listOf[*api.GlobalNetworkSet](c, "GlobalNetworkSet"),
		BGPPeers:                 listOf[*api.BGPPeer](c, "BGPPeer"),
		Namespaces:               listOf[*api.Namespace](c, "Namespace"),
		StagedPolicies:           listOf[*api.StagedNetworkPolicy](c, "StagedNetworkPolicy"),
		StagedGlobalPolicies:     listOf[*api.StagedGlobalNetworkPolicy](c, "StagedGlobalNetworkPolicy"),
		StagedKubernetesPolicies: listOf[*api.StagedKubernetesNetworkPolicy](c, "StagedKubernetesNetworkPolicy"),
	}
	eps := listOf[*api.WorkloadEndpoint](c, "WorkloadEndpoint")
	a.pending.mu.Lock()
	seen := map[string]bool{}
	for _, w := range eps {
		k := objKey(w)
		if p, ok := a.pending.m[k]; ok {
			w = p
		}
		seen[k] = true
		v.Endpoints = append(v.Endpoints, w)
	}
	for k, w := range a.pending.m {
		if !seen[k] {
			v.Endpoints = append(v.Endpoints, w)
		}
	}
	a.pending.mu.Unlock()
	live := make(map[string]bool, 2*len(v.Endpoints))
	for _, w := range v.Endpoints {
		live[objKey(w)] = true
		for _, n := range w.Spec.IPNetworks {
			live["ip:"+n] = true
		}
	}
	dead, next := c.liveTombstones(now, live)
	v.Endpoints = append(v.Endpoints, dead...)
	sort.Slice(v.Endpoints, func(i, j int) bool { return objKey(v.Endpoints[i]) < objKey(v.Endpoints[j]) })

	// FelixConfiguration: "default", overridden field by field by "node.<name>".
	if r, ok := c.get("FelixConfiguration", "", "default"); ok {
		v.Felix = r.(*api.FelixConfiguration).Spec
	}
	if r, ok := c.get("FelixConfiguration", "", "node."+a.cfg.Node); ok {
		mergeFelix(&v.Felix, &r.(*api.FelixConfiguration).Spec)
	}
	if r, ok := c.get("BGPConfiguration", "", "default"); ok {
		v.BGPConfig = r.(*api.BGPConfiguration).Spec
	}
	return v, next
}

func mergeFelix(dst, src *api.FelixConfigurationSpec) {
	if src.DefaultEndpointToHostAction != "" {
		dst.DefaultEndpointToHostAction = src.DefaultEndpointToHostAction
	}
	if src.FailsafeInboundHostPorts != nil {
		dst.FailsafeInboundHostPorts = src.FailsafeInboundHostPorts
	}
	if src.FailsafeOutboundHostPorts != nil {
		dst.FailsafeOutboundHostPorts = src.FailsafeOutboundHostPorts
	}
	if src.NATOutgoingAddress != "" {
		dst.NATOutgoingAddress = src.NATOutgoingAddress
	}
}

// syncDataplane programs the kernel from the current view.
func (a *Agent) syncDataplane(ctx context.Context) error {
	_, err := a.syncDataplaneNext(ctx)
	return err
}

// syncDataplaneNext syncs and says when the next tombstone expires.
func (a *Agent) syncDataplaneNext(ctx context.Context) (time.Time, error) {
	if a.dp == nil {
		return time.Time{}, nil
	}
	start := time.Now()
	// The view covers every change logged so far (and maybe some logged
	// while it is built: replaying those later changes nothing).
	a.cache.takeDeltas()
	v, next := a.viewAt(start)
	err := a.dp.Sync(ctx, v)
	a.m.syncs.WithLabelValues("full").Inc()
	a.noteQuarantine()
	a.notePolicyStats()
	a.m.syncDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		a.m.syncErrors.Inc()
	}
	return next, err
}

// requestSync asks the dataplane loop for a sync that starts after this
// call and waits for it. Concurrent requests share one sync.
func (a *Agent) requestSync(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case a.syncReqs <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Updater is implemented by a Dataplane that can program some datastore
// changes without a view (KernelDataplane: remote endpoints and network
// sets, as set elements). handled false: nothing was done, Sync instead.
type Updater interface {
	Update(ctx context.Context, changes []policy.Change) (handled bool, err error)
}

// updateDataplane programs the changes logged since the last sync without
// building a view, when the dataplane can; handled false: sync in full.
func (a *Agent) updateDataplane(ctx context.Context) (handled bool, err error) {
	u, ok := a.dp.(Updater)
	if !ok {
		return false, nil
	}
	start := time.Now()
	if a.cache.hasTombstones() {
		// The view may drop a tombstone without a logged change.
		return false, nil
	}
	changes, complete := a.cache.takeDeltas()
	if !complete || len(changes) == 0 {
		return false, nil
	}
	if handled, err = u.Update(ctx, changes); !handled {
		return false, nil
	}
	a.m.syncs.WithLabelValues("incremental").Inc()
	a.notePolicyStats()
	a.m.syncDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		a.m.syncErrors.Inc()
	}
	return true, err
}

// Current is implemented by a Dataplane that can tell cheaply that the
// kernel still holds exactly what its last Sync programmed (nobody has
// touched it since).
type Current interface {
	Current() bool
}

// inputs identifies what a view is built from, short of the clock (the
// tombstones' expiry has its own wake-up).
type inputs struct{ cache, pending uint64 }

// dataplaneLoop syncs on datastore changes, on request, and periodically.
// A periodic sync is skipped when nothing it would compile has changed and
// the dataplane reports the kernel untouched since the last sync: the
// resync is there to repair drift, and a full compile of every policy for
// every endpoint is most of an idle agent's CPU.
func (a *Agent) dataplaneLoop(ctx context.Context) error {
	t := time.NewTicker(a.cfg.ResyncInterval)
	defer t.Stop()
	// expiry fires when the next tombstone expires (a stopped timer when none).
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	defer expiry.Stop()
	var last inputs
	haveLast := false
	for {
		var waiters []chan error
		periodic := false
		select {
		case <-ctx.Done():
			return nil
		case w := <-a.syncReqs:
			waiters = append(waiters, w)
		case <-a.cache.changed:
		case <-t.C:
			periodic = true
		case <-expiry.C:
		}
		// Take every request queued so far: they share this sync.
	drain:
		for {
			select {
			case w := <-a.syncReqs:
				waiters = append(waiters, w)
			default:
				break drain
			}
		}
		in := inputs{cache: a.cache.Version(), pending: a.pending.ver()}
		if periodic && len(waiters) == 0 && haveLast && in == last && a.dataplaneCurrent() {
			a.m.syncSkipped.Inc()
			continue
		}
		// Changes the engine takes without a compile (remote endpoints,
		// network sets, policies that select nothing here, an ADD's
		// endpoint that shares an existing endpoint's body: the cache
		// logs the pending endpoints' changes too) are programmed as
		// elements, also for a waiting ADD; anything else (the resync, a
		// tombstone's expiry, a failed sync, a change the engine refuses)
		// syncs in full.
		if !periodic && haveLast {
			handled, err := a.updateDataplane(ctx)
			if handled {
				if err != nil {
					a.log.Warn("dataplane update failed", "error", err)
					haveLast = false
				} else {
					last = in
				}
				for _, w := range waiters {
					w <- err
				}
				continue
			}
		}
		next, err := a.syncDataplaneNext(ctx)
		if err != nil {
			a.log.Warn("dataplane sync failed", "error", err)
			haveLast = false
		} else {
			a.synced.Store(true)
			last, haveLast = in, true
		}
		if !next.IsZero() {
			expiry.Reset(time.Until(next) + time.Millisecond)
		}
		for _, w := range waiters {
			w <- err
		}
	}
}

// dataplaneCurrent reports whether the dataplane says the kernel holds
// what it last programmed; a dataplane that cannot tell is never current.
func (a *Agent) dataplaneCurrent() bool {
	c, ok := a.dp.(Current)
	return ok && c.Current()
}
