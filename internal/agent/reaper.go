package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// The reaper removes, on a live agent, the local endpoints of containers
// that died without a CNI DEL (a runtime that crashed or was killed, `ctr
// run -d --cni`, a reboot that wiped /run). The rule (docs/design/ipam.md
// §11):
//
//   - An endpoint is dead when its host interface is gone AND its
//     container's network namespace (spec.netns, the CNI_NETNS of its ADD)
//     no longer exists: the path is gone, or no namespace is mounted on it.
//   - It is removed once it has been seen dead, and is seen dead again a
//     grace period later (Config.DeadEndpointGrace, default 5 s).
//   - Removing it is a delete of the WorkloadEndpoint conditional on the
//     revision that was judged, then the release of its IPAM handle, made
//     only if that delete succeeded, no other endpoint holds the handle and
//     no ADD of the handle ran meanwhile; ADDs of the handle wait while it
//     happens (holdAdd). Every host's policy drops the endpoint through its
//     datastore watch.
//   - An interface gone while the namespace lives (an operator deleted the
//     veth) is not death: nothing is removed, CHECK fails for it, and the
//     agent reports it (a warning and tabby_agent_broken_endpoints) until
//     the runtime deletes or re-adds the container. It does not repair it:
//     the container's side of the veth went with the host side, and
//     re-creating an interface inside a running container is the runtime's
//     decision (a CNI ADD), not the agent's.
//   - An endpoint without spec.netns (written by an older agent) is never
//     judged dead here; the reconcile on the agent's next start handles it.
//
// Triggers: netlink link-delete events for tby… interfaces, and a sweep
// every Config.DeadEndpointSweep (default 30 s) as the safety net for lost
// events and endpoints that died while the agent was not watching.

// deadKernel is the reaper's seam to the kernel.
type deadKernel interface {
	// WatchLinkDeletes calls gone with the name of every link deleted in
	// the agent's network namespace until ctx ends (then it returns nil)
	// or the subscription breaks (an error: events may have been lost).
	WatchLinkDeletes(ctx context.Context, gone func(name string)) error
	// NetNSGone reports whether a namespace path certainly no longer
	// refers to a namespace; an error means it cannot tell.
	NetNSGone(path string) (bool, error)
}

// verdict is what the reaper concludes about one local endpoint.
type verdict int

const (
	epAlive   verdict = iota // its host interface exists
	epDead                   // interface and namespace gone
	epBroken                 // interface gone, namespace still there
	epUnknown                // interface gone, namespace unknown
)

// suspect is an endpoint whose interface was seen gone.
type suspect struct {
	since time.Time // when it was first seen dead (or seen gone, if !dead)
	dead  bool      // the namespace was gone too at since
}

type reaper struct {
	a      *Agent
	kernel deadKernel
	log    *slog.Logger
	grace  time.Duration
	every  time.Duration
	now    func() time.Time

	holds *holdSet

	events   chan string // names of deleted host interfaces
	overflow atomic.Bool // an event was dropped: the next pass sweeps

	reaped prometheus.Counter
	broken prometheus.Gauge

	// Owned by Run's goroutine (and by tests that drive pass directly).
	suspects map[string]suspect
	reported map[string]verdict // endpoint key → what was reported (broken, unknown)
}

// newReaper builds the agent's reaper; it starts nothing.
func newReaper(a *Agent, k deadKernel) *reaper {
	r := &reaper{
		a: a, kernel: k, log: a.log.With("component", "agent-reaper"),
		grace: a.cfg.DeadEndpointGrace, every: a.cfg.DeadEndpointSweep, now: time.Now,
		events:   make(chan string, 1024),
		suspects: map[string]suspect{},
		reported: map[string]verdict{},
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tabby_agent_dead_endpoints_reaped_total",
			Help: "Local endpoints removed, with their addresses, because their container died without a CNI DEL (interface and network namespace gone).",
		}),
		broken: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tabby_agent_broken_endpoints",
			Help: "Local endpoints whose host interface is gone while their container's network namespace still exists: kept, CHECK fails for them.",
		}),
	}
	r.holds = newHoldSet(func() time.Time { return r.now() })
	if a.m != nil {
		a.m.reg.MustRegister(r.reaped, r.broken)
	}
	return r
}

// Run watches link events and sweeps until ctx ends.
func (r *reaper) Run(ctx context.Context) error {
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); r.watchLinks(ctx) }()
	defer func() { <-watchDone }()
	sweep := time.NewTicker(r.every)
	defer sweep.Stop()
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	r.pass(ctx, nil, true)
	for {
		r.resetDue(due)
		var gone []string
		full := false
		select {
		case <-ctx.Done():
			return nil
		case name := <-r.events:
			gone = append(gone, name)
			gone = append(gone, r.drainEvents()...)
		case <-sweep.C:
			full = true
		case <-due.C:
		}
		if r.overflow.Swap(false) {
			full = true
		}
		r.pass(ctx, gone, full)
	}
}

// watchLinks feeds r.events from the kernel's link-delete events,
// subscribing again (after a pause, and with a sweep: events may have
// been lost) whenever the subscription breaks.
func (r *reaper) watchLinks(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.kernel.WatchLinkDeletes(ctx, func(name string) {
			if !strings.HasPrefix(name, endpoint.HostIfPrefix) {
				return
			}
			select {
			case r.events <- name:
			default:
				r.overflow.Store(true)
			}
		})
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("link event subscription broke; sweeping, and subscribing again", "error", err)
		r.overflow.Store(true)
		select {
		case r.events <- "":
		default:
		}
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

func (r *reaper) drainEvents() []string {
	var out []string
	for {
		select {
		case n := <-r.events:
			out = append(out, n)
		default:
			return out
		}
	}
}

// resetDue arms t for the earliest suspect's end of grace.
func (r *reaper) resetDue(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	var next time.Time
	for _, s := range r.suspects {
		if at := s.since.Add(r.grace); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		t.Reset(max(time.Until(next), 0))
	}
}

// localEndpoints are this node's cached endpoints with an interface, by key.
func (r *reaper) localEndpoints() map[string]*api.WorkloadEndpoint {
	out := map[string]*api.WorkloadEndpoint{}
	for _, w := range listOf[*api.WorkloadEndpoint](r.a.cache, "WorkloadEndpoint") {
		if w.Spec.Node == r.a.cfg.Node && w.Spec.InterfaceName != "" {
			out[objKey(w)] = w
		}
	}
	return out
}

// pass is one round: the interfaces named gone (from events) become
// suspects; with full, so do all local endpoints without an interface;
// suspects whose grace has ended are judged again, and reaped when dead
// both times.
func (r *reaper) pass(ctx context.Context, gone []string, full bool) {
	eps := r.localEndpoints()
	now := r.now()
	goneNames := map[string]bool{}
	for _, n := range gone {
		goneNames[n] = true
	}
	var present map[string]bool
	needList := full
	for _, s := range r.suspects {
		if !now.Before(s.since.Add(r.grace)) {
			needList = true
		}
	}
	if needList {
		ifs, err := r.a.wirer.List(ctx)
		if err != nil {
			r.log.Warn("list host interfaces", "error", err)
			return
		}
		present = make(map[string]bool, len(ifs))
		for _, h := range ifs {
			present[h.Name] = true
		}
	}
	for k := range r.suspects {
		if _, ok := eps[k]; !ok {
			delete(r.suspects, k) // deleted meanwhile (DEL, or another agent)
		}
	}
	r.forgetReports(eps, present)
	for _, k := range sortedKeys(eps) {
		w := eps[k]
		s, isSuspect := r.suspects[k]
		switch {
		case isSuspect && !now.Before(s.since.Add(r.grace)):
			r.judge(ctx, k, w, s, present[w.Spec.InterfaceName], now)
		case isSuspect:
		case goneNames[w.Spec.InterfaceName]:
			r.noteGone(k, w, now)
		case present != nil && !present[w.Spec.InterfaceName]:
			r.noteGone(k, w, now)
		}
	}
}

// noteGone makes an endpoint whose interface was seen gone a suspect.
func (r *reaper) noteGone(k string, w *api.WorkloadEndpoint, now time.Time) {
	v, _ := r.classify(w, false)
	r.suspects[k] = suspect{since: now, dead: v == epDead}
	r.log.Debug("interface of a local endpoint is gone; judging again after the grace period",
		"endpoint", w.Name, "interface", w.Spec.InterfaceName, "netns", w.Spec.NetNS, "namespaceGone", v == epDead, "grace", r.grace)
}

// classify judges an endpoint from whether its interface is present and
// whether its namespace is gone.
func (r *reaper) classify(w *api.WorkloadEndpoint, ifPresent bool) (verdict, error) {
	if ifPresent {
		return epAlive, nil
	}
	if w.Spec.NetNS == "" {
		return epUnknown, errors.New("the endpoint records no network namespace (written by an older agent)")
	}
	gone, err := r.kernel.NetNSGone(w.Spec.NetNS)
	switch {
	case err != nil:
		return epUnknown, err
	case gone:
		return epDead, nil
	}
	return epBroken, nil
}

// judge decides about a suspect whose grace has ended.
func (r *reaper) judge(ctx context.Context, k string, w *api.WorkloadEndpoint, s suspect, ifPresent bool, now time.Time) {
	v, err := r.classify(w, ifPresent)
	switch v {
	case epAlive:
		delete(r.suspects, k)
	case epDead:
		if !s.dead {
			r.suspects[k] = suspect{since: now, dead: true} // the grace starts now
			return
		}
		r.reap(ctx, k, w, s)
	case epBroken, epUnknown:
		delete(r.suspects, k)
		r.report(k, w, v, err)
	}
}

// report says once per endpoint that its interface is gone although its
// container may live.
func (r *reaper) report(k string, w *api.WorkloadEndpoint, v verdict, err error) {
	if r.reported[k] == v {
		return
	}
	if old, ok := r.reported[k]; ok && old == epBroken {
		r.broken.Dec()
	}
	r.reported[k] = v
	if v == epBroken {
		r.broken.Inc()
		r.log.Warn("host interface of a live container is gone; keeping its endpoint and addresses (CHECK fails; the runtime must DEL or ADD it again)",
			"endpoint", w.Name, "namespace", w.Namespace, "containerID", w.Spec.ContainerID, "interface", w.Spec.InterfaceName, "netns", w.Spec.NetNS)
		return
	}
	r.log.Info("host interface of an endpoint is gone, but whether its container lives is unknown; keeping it (the agent's start-up reconcile removes it)",
		"endpoint", w.Name, "namespace", w.Namespace, "interface", w.Spec.InterfaceName, "netns", w.Spec.NetNS, "reason", err)
}

// forgetReports drops reports of endpoints that are gone, or (when the
// interfaces were listed) whose interface is back.
func (r *reaper) forgetReports(eps map[string]*api.WorkloadEndpoint, present map[string]bool) {
	for k, v := range r.reported {
		w, ok := eps[k]
		if ok && (present == nil || !present[w.Spec.InterfaceName]) {
			continue
		}
		if v == epBroken {
			r.broken.Dec()
		}
		delete(r.reported, k)
	}
}

// reapTimeout bounds the datastore work of one reap (ADDs of the handle
// wait for it).
const reapTimeout = 10 * time.Second

// reap removes a dead endpoint: the WorkloadEndpoint at the revision
// judged, then its addresses (see the rule at the top of this file).
func (r *reaper) reap(ctx context.Context, k string, w *api.WorkloadEndpoint, s suspect) {
	h := w.Spec.IPAMHandle
	release, ok := r.holds.tryReap(h, s.since)
	if !ok {
		// An ADD of the handle is running, or ran since the endpoint was
		// seen dead: judge again from the start once the cache has it.
		r.suspects[k] = suspect{since: r.now()}
		return
	}
	defer release()
	if r.a.pending.has(k) {
		r.suspects[k] = suspect{since: r.now()}
		return
	}
	delete(r.suspects, k)
	ctx, cancel := context.WithTimeout(ctx, reapTimeout)
	defer cancel()
	_, err := r.a.client.Delete(ctx, "WorkloadEndpoint", w.Namespace, w.Name, w.ResourceVersion)
	switch {
	case errors.Is(err, datastore.ErrNotFound), errors.Is(err, datastore.ErrConflict):
		r.log.Info("dead container's endpoint changed or went before it was removed; releasing nothing",
			"endpoint", w.Name, "namespace", w.Namespace, "revision", w.ResourceVersion, "error", err)
		return
	case err != nil:
		r.suspects[k] = s // try again at the next pass
		r.log.Warn("remove a dead container's endpoint; will retry", "endpoint", w.Name, "error", err)
		return
	}
	addrs := endpointAddrs(w)
	if r.a.dp != nil && len(addrs) > 0 {
		r.a.dp.EndpointGone(ctx, addrs)
	}
	if cur, ok := r.a.cache.get("WorkloadEndpoint", w.Namespace, w.Name); ok && cur.GetObjectMeta().ResourceVersion == w.ResourceVersion {
		r.a.cache.remove("WorkloadEndpoint", cur)
		r.a.m.endpoints.Dec()
	}
	r.reaped.Inc()
	freed, err := r.releaseHandle(ctx, k, h)
	if err != nil {
		r.log.Warn("removed a dead container's endpoint, but releasing its addresses failed; IPAM GC releases them after its grace period",
			"endpoint", w.Name, "handle", h, "error", err)
		return
	}
	r.log.Info("removed the endpoint of a container that died without CNI DEL, and released its addresses",
		"endpoint", w.Name, "namespace", w.Namespace, "containerID", w.Spec.ContainerID, "interface", w.Spec.InterfaceName,
		"netns", w.Spec.NetNS, "handle", h, "released", freed, "deadSince", s.since)
}

// releaseHandle releases the handle of a removed endpoint unless another
// endpoint (cached, or being added) holds it.
func (r *reaper) releaseHandle(ctx context.Context, k, h string) ([]netip.Addr, error) {
	if h == "" {
		return nil, nil
	}
	for _, o := range listOf[*api.WorkloadEndpoint](r.a.cache, "WorkloadEndpoint") {
		if o.Spec.IPAMHandle == h && objKey(o) != k {
			r.log.Info("another endpoint holds the dead container's handle; releasing nothing", "handle", h, "endpoint", o.Name)
			return nil, nil
		}
	}
	if r.a.pending.holdsHandle(h) {
		return nil, nil
	}
	return r.a.ipam.ReleaseHandle(ctx, h)
}

func endpointAddrs(w *api.WorkloadEndpoint) []netip.Addr {
	var out []netip.Addr
	for _, n := range w.Spec.IPNetworks {
		if p, err := netip.ParsePrefix(n); err == nil {
			out = append(out, p.Addr())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// holdAdd marks an ADD of handle as running until the returned function
// is called, waiting first while the reaper removes an endpoint of that
// handle. Nil-safe, for agents built without a reaper in tests.
func (r *reaper) holdAdd(handle string) func() {
	if r == nil {
		return func() {}
	}
	return r.holds.holdAdd(handle)
}
