package agent

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// maxDeltas bounds the change log between two dataplane syncs; past it a
// full sync is cheaper than replaying every change.
const maxDeltas = 4096

// cache mirrors the resources the agent needs from the datastore, one
// datastore.Reflector per kind (list, watch from the listing's revision,
// relist when the watch breaks). While the datastore is unreachable the
// cache keeps its last state, so the dataplane is left as it is. A record
// that cannot be decoded is left out (logged once, counted in
// tabby_datastore_bad_records_total) and the rest of its kind is served.
type cache struct {
	client *datastore.Client
	kinds  []string
	log    *slog.Logger
	// onBad is told of every record that cannot be decoded (a metric).
	onBad func(datastore.BadRecord)

	// node is this agent's node: only its endpoints get tombstones.
	node string

	mu      sync.RWMutex
	objs    map[string]map[string]api.Resource // kind → namespace/name → resource
	synced  map[string]bool
	version uint64           // bumped on every change
	seen    map[string]int64 // kind → newest revision its watch delivered

	// deltas are the changes since the dataplane last took them, in
	// order; overflowed says more than maxDeltas came (the dataplane then
	// syncs in full instead).
	deltas     []policy.Change
	overflowed bool

	// tombstones keep deleted WorkloadEndpoints in the dataplane's view for
	// a short while (see tombstoneTTL).
	tombstones map[string]tombstone

	changed chan struct{} // coalescing change signal (capacity 1)
	ready   chan struct{} // closed once every kind has been listed
	once    sync.Once
}

func newCache(c *datastore.Client, kinds []string, log *slog.Logger) *cache {
	objs := map[string]map[string]api.Resource{}
	for _, k := range kinds {
		objs[k] = map[string]api.Resource{}
	}
	return &cache{
		client: c, kinds: kinds, log: log, objs: objs, synced: map[string]bool{},
		changed: make(chan struct{}, 1), ready: make(chan struct{}),
	}
}

func objKey(r api.Resource) string {
	m := r.GetObjectMeta()
	return m.Namespace + "/" + m.Name
}

// Run keeps the cache in sync until ctx ends.
func (c *cache) Run(ctx context.Context) error {
	// Every reflector is built before any runs: an error returns with
	// nothing started.
	rs := make([]*datastore.Reflector[api.Resource], 0, len(c.kinds))
	for _, k := range c.kinds {
		r, err := datastore.NewResourceReflector(c.client.Store, k, c.handler(k), datastore.ReflectorOptions{
			Log: c.log, OnBad: c.onBad,
		})
		if err != nil {
			return fmt.Errorf("cache %s: %w", k, err)
		}
		rs = append(rs, r)
	}
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { _ = r.Run(ctx) })
	}
	wg.Wait()
	return nil
}

// handler applies one kind's reflector events to the cache.
func (c *cache) handler(kind string) datastore.Handler[api.Resource] {
	return datastore.Handler[api.Resource]{
		Replace: func(items []datastore.Item[api.Resource], rev int64) {
			c.saw(kind, rev)
			list := make([]api.Resource, len(items))
			for i, it := range items {
				list[i] = it.Value
			}
			c.replace(kind, list)
		},
		Put:    func(it datastore.Item[api.Resource]) { c.saw(kind, it.Revision); c.put(kind, it.Value) },
		Delete: func(_ string, old api.Resource, rev int64) { c.saw(kind, rev); c.remove(kind, old) },
	}
}

// saw records the newest revision the watch has delivered for kind.
func (c *cache) saw(kind string, rev int64) {
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]int64{}
	}
	if rev > c.seen[kind] {
		c.seen[kind] = rev
	}
	c.mu.Unlock()
}

// putWritten stores a resource this agent has just written at rev, so the
// dataplane sees it before the watch brings it back. It is skipped when
// the watch has already delivered rev or later (the cache then holds that
// write or something newer, a delete included): a write is never put over
// a newer state.
func (c *cache) putWritten(kind string, r api.Resource, rev int64) {
	c.mu.Lock()
	if rev <= c.seen[kind] {
		c.mu.Unlock()
		return
	}
	k := objKey(r)
	c.record(c.objs[kind][k], r)
	c.objs[kind][k] = r
	c.version++
	c.mu.Unlock()
	c.signal()
}

// record appends a change to the delta log (c.mu held).
func (c *cache) record(old, cur api.Resource) {
	if c.overflowed {
		return
	}
	if len(c.deltas) == maxDeltas {
		c.deltas, c.overflowed = nil, true
		return
	}
	c.deltas = append(c.deltas, policy.Change{Old: old, New: cur})
}

// takeDeltas returns the changes since the last call, in order, and
// empties the log; complete is false when the log overflowed (the caller
// must then sync from the whole cache).
func (c *cache) takeDeltas() (ds []policy.Change, complete bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds, complete = c.deltas, !c.overflowed
	c.deltas, c.overflowed = nil, false
	return ds, complete
}

func (c *cache) replace(kind string, list []api.Resource) {
	m := make(map[string]api.Resource, len(list))
	for _, r := range list {
		m[objKey(r)] = r
	}
	c.mu.Lock()
	old := c.objs[kind]
	for k, r := range m {
		if o := old[k]; o != r {
			c.record(o, r)
		}
	}
	for k, o := range old {
		if _, ok := m[k]; !ok {
			c.record(o, nil)
		}
	}
	c.objs[kind] = m
	c.synced[kind] = true
	all := len(c.synced) == len(c.kinds)
	c.version++
	c.mu.Unlock()
	if all {
		c.once.Do(func() { close(c.ready) })
	}
	c.signal()
}

func (c *cache) put(kind string, r api.Resource) {
	c.mu.Lock()
	k := objKey(r)
	old := c.objs[kind][k]
	quiet := statusOnly(old, r)
	c.objs[kind][k] = r
	if quiet {
		c.mu.Unlock()
		return
	}
	c.record(old, r)
	c.version++
	c.mu.Unlock()
	c.signal()
}

// statusOnly reports whether an update of a Node changes only its status —
// the heartbeat every agent writes every 30 s — which nothing the
// dataplane computes reads: such an update is stored without waking the
// dataplane, or every agent would recompile everything every 30 s / hosts.
func statusOnly(old, cur api.Resource) bool {
	o, ok := old.(*api.Node)
	n, ok2 := cur.(*api.Node)
	if !ok || !ok2 {
		return false
	}
	oc, nc := *o, *n
	oc.Status, nc.Status = api.NodeStatus{}, api.NodeStatus{}
	oc.ResourceVersion, nc.ResourceVersion = "", ""
	return reflect.DeepEqual(oc, nc)
}

func (c *cache) remove(kind string, r api.Resource) {
	c.mu.Lock()
	k := objKey(r)
	old, ok := c.objs[kind][k]
	if w, isWEP := old.(*api.WorkloadEndpoint); ok && isWEP && w.Spec.Node == c.node {
		if c.tombstones == nil {
			c.tombstones = map[string]tombstone{}
		}
		c.tombstones[k] = tombstone{w: w, until: time.Now().Add(tombstoneTTL)}
	}
	if ok {
		c.record(old, nil)
	}
	delete(c.objs[kind], k)
	c.version++
	c.mu.Unlock()
	c.signal()
}

// tombstoneTTL is how long a deleted local endpoint's policy state outlives it.
// Removing nftables elements and chains costs the kernel an RCU grace
// period per transaction (~10 ms); holding removals back lets a burst of
// DELs share one transaction and keeps them out of the way of ADDs, which
// wait for their own policy. The endpoint's interface is already gone, so
// its chains match nothing; its address lingers in selector sets only
// while no live endpoint holds it (see liveTombstones). A remote
// endpoint's removal costs only set elements (the incremental path), so
// it gets no tombstone and leaves the sets at once.
const tombstoneTTL = 300 * time.Millisecond

type tombstone struct {
	w     *api.WorkloadEndpoint
	until time.Time
}

// liveTombstones returns the tombstones still within their TTL whose
// addresses no endpoint in live holds, drops the expired ones, and says
// when the next one expires (zero: none left).
func (c *cache) liveTombstones(now time.Time, live map[string]bool) ([]*api.WorkloadEndpoint, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*api.WorkloadEndpoint
	var next time.Time
	for k, t := range c.tombstones {
		if !now.Before(t.until) {
			delete(c.tombstones, k)
			continue
		}
		if next.IsZero() || t.until.Before(next) {
			next = t.until
		}
		if live[k] {
			continue
		}
		reused := false
		for _, n := range t.w.Spec.IPNetworks {
			reused = reused || live["ip:"+n]
		}
		if !reused {
			out = append(out, t.w)
		}
	}
	return out, next
}

func (c *cache) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// list returns the cached resources of a kind.
func (c *cache) list(kind string) []api.Resource {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]api.Resource, 0, len(c.objs[kind]))
	for _, r := range c.objs[kind] {
		out = append(out, r)
	}
	return out
}

// get returns one cached resource.
func (c *cache) get(kind, namespace, name string) (api.Resource, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.objs[kind][namespace+"/"+name]
	return r, ok
}

// Version changes whenever the cache does.
func (c *cache) Version() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.version
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// listOf converts cached resources to their concrete type.
func listOf[T api.Resource](c *cache, kind string) []T {
	rs := c.list(kind)
	out := make([]T, 0, len(rs))
	for _, r := range rs {
		if t, ok := r.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// notePending logs a change of the dataplane's view that comes from the
// ADD in progress rather than the datastore: w becomes the view's
// endpoint of its name (added: true; the pending endpoint overrides the
// cache's), or stops being it (added: false; the view falls back to the
// cache's endpoint of that name, or to none). Logged in order with the
// datastore's changes, so the incremental path sees the view move exactly
// as a full sync would.
func (c *cache) notePending(w *api.WorkloadEndpoint, added bool) {
	c.mu.Lock()
	cur, inCache := c.objs["WorkloadEndpoint"][objKey(w)]
	switch {
	case added:
		c.record(cur, w)
	case !inCache:
		c.record(w, nil)
	default:
		c.record(w, cur)
	}
	c.mu.Unlock()
	if !added {
		c.signal()
	}
}

// hasTombstones reports whether a deleted local endpoint may still be in
// the view: its tombstone leaves the view when it expires, or as soon as
// a live endpoint takes its name or address, which no logged change says.
func (c *cache) hasTombstones() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.tombstones) > 0
}
