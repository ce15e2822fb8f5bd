package dns

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/dns/mesos"
)

// datastoreSource keeps every WorkloadEndpoint, Node and IPPool of the
// datastore in memory, one datastore.Reflector per kind: listed once, then
// watched; listed again when the watch breaks or its revision was
// compacted. Endpoints and nodes make records; pools and nodes say which
// clients may have names forwarded. A record that cannot be decoded is
// left out (logged once, counted in tabby_dns_datastore_decode_errors_total);
// every other name is served.
type datastoreSource struct {
	store   datastore.Store
	log     *slog.Logger
	m       *metrics
	changed func()

	mu     sync.Mutex
	weps   map[string]*api.WorkloadEndpoint // "namespace/name"
	nodes  map[string]*api.Node
	pools  map[string]*api.IPPool
	synced map[string]bool // kind → listed at least once
}

const (
	kindEndpoint = "WorkloadEndpoint"
	kindNode     = "Node"
	kindPool     = "IPPool"
)

var sourceKinds = []string{kindEndpoint, kindNode, kindPool}

func newDatastoreSource(store datastore.Store, log *slog.Logger, m *metrics, changed func()) *datastoreSource {
	return &datastoreSource{
		store: store, log: log.With("source", "datastore"), m: m, changed: changed,
		weps: map[string]*api.WorkloadEndpoint{}, nodes: map[string]*api.Node{}, pools: map[string]*api.IPPool{}, synced: map[string]bool{},
	}
}

// run lists and watches every kind until ctx ends.
func (s *datastoreSource) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, kind := range sourceKinds {
		r, err := datastore.NewResourceReflector(s.store, kind, s.handler(kind), datastore.ReflectorOptions{
			Log:      s.log,
			OnBad:    func(datastore.BadRecord) { s.m.datastoreDecErr.Inc() },
			OnRelist: s.m.dsResyncs.Inc,
		})
		if err != nil {
			panic(fmt.Sprintf("dns: %v", err)) // the kinds are constants
		}
		wg.Go(func() { _ = r.Run(ctx) })
	}
	wg.Wait()
}

// handler applies one kind's events.
func (s *datastoreSource) handler(kind string) datastore.Handler[api.Resource] {
	events := s.m.dsEvents.WithLabelValues(kind)
	return datastore.Handler[api.Resource]{
		Replace: func(items []datastore.Item[api.Resource], rev int64) { s.replace(kind, items, rev) },
		Put: func(it datastore.Item[api.Resource]) {
			s.mu.Lock()
			s.set(it.Value)
			s.mu.Unlock()
			events.Inc()
			s.changed()
		},
		Delete: func(_ string, old api.Resource, _ int64) {
			s.mu.Lock()
			s.remove(old)
			s.mu.Unlock()
			events.Inc()
			s.changed()
		},
	}
}

func (s *datastoreSource) replace(kind string, items []datastore.Item[api.Resource], rev int64) {
	s.mu.Lock()
	switch kind {
	case kindEndpoint:
		s.weps = make(map[string]*api.WorkloadEndpoint, len(items))
	case kindNode:
		s.nodes = make(map[string]*api.Node, len(items))
	case kindPool:
		s.pools = make(map[string]*api.IPPool, len(items))
	}
	for _, it := range items {
		s.set(it.Value)
	}
	first := !s.synced[kind]
	s.synced[kind] = true
	all := s.allSynced()
	s.mu.Unlock()
	if first {
		s.log.Info("listed", "kind", kind, "count", len(items), "revision", rev)
	}
	if all {
		s.m.dsSynced.Set(1)
	}
	s.changed()
}

func resourceKey(r api.Resource) string {
	m := r.GetObjectMeta()
	return m.Namespace + "/" + m.Name
}

// set and remove need s.mu.
func (s *datastoreSource) set(r api.Resource) {
	switch v := r.(type) {
	case *api.WorkloadEndpoint:
		s.weps[resourceKey(v)] = v
	case *api.Node:
		s.nodes[v.Name] = v
	case *api.IPPool:
		s.pools[v.Name] = v
	}
}

func (s *datastoreSource) remove(r api.Resource) {
	switch v := r.(type) {
	case *api.WorkloadEndpoint:
		delete(s.weps, resourceKey(v))
	case *api.Node:
		delete(s.nodes, v.Name)
	case *api.IPPool:
		delete(s.pools, v.Name)
	}
}

// allSynced needs s.mu.
func (s *datastoreSource) allSynced() bool {
	for _, k := range sourceKinds {
		if !s.synced[k] {
			return false
		}
	}
	return true
}

// inputs returns the current endpoints, nodes and pools (shared, never
// modified: every event brings a new value) and whether every kind was
// listed.
func (s *datastoreSource) inputs() ([]*api.WorkloadEndpoint, []*api.Node, []*api.IPPool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	eps := make([]*api.WorkloadEndpoint, 0, len(s.weps))
	for _, e := range s.weps {
		eps = append(eps, e)
	}
	nodes := make([]*api.Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		nodes = append(nodes, n)
	}
	pools := make([]*api.IPPool, 0, len(s.pools))
	for _, p := range s.pools {
		pools = append(pools, p)
	}
	return eps, nodes, pools, s.allSynced()
}

// mesosSource polls <master>/master/state and keeps the last good state:
// when the master is unreachable or answers nonsense, the last good
// records stay served, and the logs and metrics say so.
type mesosSource struct {
	masters []string // base URLs
	client  *http.Client
	refresh time.Duration
	timeout time.Duration
	log     *slog.Logger
	m       *metrics
	changed func()

	mu        sync.Mutex
	state     *mesos.State
	sum       [sha256.Size]byte
	attempted bool
	failing   bool
	lastOK    time.Time
}

func (s *mesosSource) run(ctx context.Context) {
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *mesosSource) poll(ctx context.Context) {
	body, from, err := s.fetch(ctx)
	var st *mesos.State
	if err == nil {
		if st, err = mesos.Decode(body); err != nil {
			err = fmt.Errorf("%s: %w", from, err)
		}
	}
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	first := !s.attempted
	s.attempted = true
	if err != nil {
		wasFailing := s.failing
		s.failing = true
		haveState, lastOK := s.state != nil, s.lastOK
		s.mu.Unlock()
		if haveState {
			s.m.mesosStale.Set(1)
		}
		s.m.mesosFetchErr.Inc()
		switch {
		case !wasFailing && haveState:
			s.log.Warn("cannot read the Mesos master state; serving the last good records", "error", err, "last_success", lastOK)
		case !wasFailing:
			s.log.Warn("cannot read the Mesos master state; no Mesos records yet", "error", err)
		default:
			s.log.Debug("Mesos master state still unreadable", "error", err)
		}
		if first {
			s.changed()
		}
		return
	}
	sum := sha256.Sum256(body)
	changed := sum != s.sum || first
	if changed {
		s.state, s.sum = st, sum
	}
	wasFailing := s.failing
	s.failing = false
	s.lastOK = time.Now()
	s.mu.Unlock()
	s.m.mesosStale.Set(0)
	s.m.mesosLastOK.SetToCurrentTime()
	s.m.mesosFetchOK.Inc()
	if wasFailing || first {
		s.log.Info("read the Mesos master state", "from", from, "agents", len(st.Slaves), "frameworks", len(st.Frameworks))
	}
	if changed {
		s.changed()
	}
}

// fetch reads the state from the first master that answers.
func (s *mesosSource) fetch(ctx context.Context) ([]byte, string, error) {
	var errs []error
	for _, base := range s.masters {
		u := base + "/master/state"
		body, err := s.fetchOne(ctx, u)
		if err == nil {
			return body, u, nil
		}
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

func (s *mesosSource) fetchOne(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tabby-dns")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, mesos.MaxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	if len(body) > mesos.MaxStateSize {
		return nil, fmt.Errorf("fetch %s: state larger than %d bytes", u, mesos.MaxStateSize)
	}
	return body, nil
}

// current returns the last good state (nil if none) and whether a first
// attempt was made.
func (s *mesosSource) current() (*mesos.State, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.attempted
}
