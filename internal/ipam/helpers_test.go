package ipam

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// forEachStore runs body against the in-memory store and a real embedded
// etcd: the same invariants must hold on both.
func forEachStore(t *testing.T, body func(t *testing.T, s datastore.Store)) {
	t.Helper()
	t.Run("memstore", func(t *testing.T) { body(t, memstore.New()) })
	t.Run("etcd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping the etcd run")
		}
		body(t, etcdtest.New(t))
	})
}

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newIPAM(t testing.TB, s datastore.Store, c *clock) *IPAM {
	t.Helper()
	cfg := Config{}
	if c != nil {
		cfg.Now = c.Now
	}
	log := etcdtest.Logger(t)
	if _, bench := t.(*testing.B); bench {
		log = slog.New(slog.DiscardHandler) // t.Log would dominate the timings
	}
	m, err := NewWithConfig(s, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type poolOpt func(*api.IPPool)

func blockSize(n int) poolOpt       { return func(p *api.IPPool) { p.Spec.BlockSize = n } }
func nodeSelector(s string) poolOpt { return func(p *api.IPPool) { p.Spec.NodeSelector = s } }
func disabled() poolOpt             { return func(p *api.IPPool) { p.Spec.Disabled = true } }
func uses(u ...string) poolOpt      { return func(p *api.IPPool) { p.Spec.AllowedUses = u } }

func mkPool(name, cidr string, opts ...poolOpt) *api.IPPool {
	p := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: name}, Spec: api.IPPoolSpec{CIDR: cidr}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func createPool(t testing.TB, s datastore.Store, name, cidr string, opts ...poolOpt) *api.IPPool {
	t.Helper()
	r, err := datastore.NewClient(s).Create(context.Background(), mkPool(name, cidr, opts...))
	if err != nil {
		t.Fatalf("create pool %s: %v", name, err)
	}
	return r.(*api.IPPool)
}

func createNode(t testing.TB, s datastore.Store, name string, labels map[string]string) {
	t.Helper()
	n := &api.Node{ObjectMeta: api.ObjectMeta{Name: name, Labels: labels}}
	if _, err := datastore.NewClient(s).Create(context.Background(), n); err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
}

func deleteNode(t testing.TB, s datastore.Store, name string) {
	t.Helper()
	if _, err := datastore.NewClient(s).Delete(context.Background(), "Node", "", name, ""); err != nil {
		t.Fatalf("delete node %s: %v", name, err)
	}
}

func setConfig(t testing.TB, s datastore.Store, spec api.IPAMConfigSpec) {
	t.Helper()
	c := &api.IPAMConfig{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: spec}
	if _, _, err := datastore.NewClient(s).Apply(context.Background(), c); err != nil {
		t.Fatalf("apply IPAMConfig: %v", err)
	}
}

func createWEP(t testing.TB, s datastore.Store, name, node, handle string, addrs ...netip.Addr) {
	t.Helper()
	w := &api.WorkloadEndpoint{
		ObjectMeta: api.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       api.WorkloadEndpointSpec{Node: node, Orchestrator: "cni", Endpoint: "eth0", InterfaceName: "tby0123456789a", IPAMHandle: handle, ContainerID: "c" + name},
	}
	for _, a := range addrs {
		w.Spec.IPNetworks = append(w.Spec.IPNetworks, netip.PrefixFrom(a, a.BitLen()).String())
	}
	if _, err := datastore.NewClient(s).Create(context.Background(), w); err != nil {
		t.Fatalf("create endpoint %s: %v", name, err)
	}
}

func alloc(t testing.TB, m *IPAM, req Request) []Allocation {
	t.Helper()
	out, err := m.Allocate(context.Background(), req)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", req.Handle, err)
	}
	return out
}

func v4(handle, node string) Request { return Request{Handle: handle, Node: node, IPv4: 1} }

func mustAddr(s string) netip.Addr  { return netip.MustParseAddr(s) }
func mustPfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkClean fails the test when Check finds problems.
func checkClean(t testing.TB, m *IPAM, live map[string]bool) Report {
	t.Helper()
	r, err := m.Check(context.Background(), live)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, p := range r.Problems {
		t.Errorf("ipam check: %s", p)
	}
	return r
}

// counting wraps a Store and counts round trips.
type counting struct {
	datastore.Store
	reads, txns atomic.Int64
	keys        atomic.Int64 // keys returned by reads
}

func (c *counting) Get(ctx context.Context, key string) (*datastore.KV, error) {
	c.reads.Add(1)
	kv, err := c.Store.Get(ctx, key)
	if err == nil {
		c.keys.Add(1)
	}
	return kv, err
}

func (c *counting) List(ctx context.Context, prefix string) ([]*datastore.KV, int64, error) {
	c.reads.Add(1)
	kvs, rev, err := c.Store.List(ctx, prefix)
	c.keys.Add(int64(len(kvs)))
	return kvs, rev, err
}

func (c *counting) Create(ctx context.Context, key string, value []byte) (int64, error) {
	c.txns.Add(1)
	return c.Store.Create(ctx, key, value)
}

func (c *counting) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	c.txns.Add(1)
	return c.Store.Update(ctx, key, value, rev)
}

func (c *counting) Delete(ctx context.Context, key string, rev int64) error {
	c.txns.Add(1)
	return c.Store.Delete(ctx, key, rev)
}

func (c *counting) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	c.txns.Add(1)
	return c.Store.Txn(ctx, ops)
}

// ipamKeys lists the IPAM keys in the store.
func ipamKeys(t testing.TB, s datastore.Store) []string {
	t.Helper()
	kvs, _, err := s.List(context.Background(), datastore.IPAMPrefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}
