package ipam

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// benchStores returns n connections to one datastore of the given kind.
func benchStores(b *testing.B, kind string, n int) []datastore.Store {
	b.Helper()
	out := make([]datastore.Store, n)
	switch kind {
	case "memstore":
		s := memstore.New()
		for i := range out {
			out[i] = s
		}
	case "etcd":
		_, cfg := etcdtest.NewServer(b)
		for i := range out {
			s, err := etcd.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			out[i] = s
		}
	}
	return out
}

// BenchmarkAllocateUncontended: one host allocating from its own blocks.
// Reports allocations per second and datastore round trips per allocation.
func BenchmarkAllocateUncontended(b *testing.B) {
	for _, kind := range []string{"memstore", "etcd"} {
		b.Run(kind, func(b *testing.B) {
			s := benchStores(b, kind, 1)[0]
			createPool(b, s, "big", "10.0.0.0/8")
			createNode(b, s, "n1", nil)
			c := &counting{Store: s}
			// As in the agent: IPReservations from its watched cache.
			m, err := NewWithConfig(c, slog.New(slog.DiscardHandler), Config{Reservations: func() []*api.IPReservation { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			alloc(b, m, v4("warm", "n1"))
			c.reads.Store(0)
			c.txns.Store(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Allocate(ctx, v4(fmt.Sprintf("h%d", i), "n1")); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
			b.ReportMetric(float64(c.txns.Load())/float64(b.N), "txns/alloc")
			b.ReportMetric(float64(c.reads.Load())/float64(b.N), "reads/alloc")
		})
	}
}

// BenchmarkAllocateContended: 8 hosts, each with its own IPAM and
// datastore connection, allocating at the same time from one pool.
func BenchmarkAllocateContended(b *testing.B) {
	const hosts = 8
	for _, kind := range []string{"memstore", "etcd"} {
		b.Run(kind, func(b *testing.B) {
			stores := benchStores(b, kind, hosts)
			createPool(b, stores[0], "big", "10.0.0.0/8")
			ms := make([]*IPAM, hosts)
			cs := make([]*counting, hosts)
			for i := range ms {
				createNode(b, stores[0], fmt.Sprintf("n%d", i), nil)
				cs[i] = &counting{Store: stores[i]}
				ms[i] = newIPAM(b, cs[i], nil)
				alloc(b, ms[i], v4(fmt.Sprintf("warm%d", i), fmt.Sprintf("n%d", i)))
				cs[i].reads.Store(0)
				cs[i].txns.Store(0)
			}
			ctx := context.Background()
			b.ResetTimer()
			var wg sync.WaitGroup
			for i := range hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := i; j < b.N; j += hosts {
						if _, err := ms[i].Allocate(ctx, v4(fmt.Sprintf("h%d", j), fmt.Sprintf("n%d", i))); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			var txns, reads int64
			for _, c := range cs {
				txns += c.txns.Load()
				reads += c.reads.Load()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
			b.ReportMetric(float64(txns)/float64(b.N), "txns/alloc")
			b.ReportMetric(float64(reads)/float64(b.N), "reads/alloc")
		})
	}
}

// BenchmarkRelease: releasing by handle.
func BenchmarkRelease(b *testing.B) {
	for _, kind := range []string{"memstore", "etcd"} {
		b.Run(kind, func(b *testing.B) {
			s := benchStores(b, kind, 1)[0]
			createPool(b, s, "big", "10.0.0.0/8")
			c := &counting{Store: s}
			m := newIPAM(b, c, nil)
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				alloc(b, m, v4(fmt.Sprintf("h%d", i), "n1"))
			}
			c.reads.Store(0)
			c.txns.Store(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.ReleaseHandle(ctx, fmt.Sprintf("h%d", i)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(c.txns.Load())/float64(b.N), "txns/release")
			b.ReportMetric(float64(c.reads.Load())/float64(b.N), "reads/release")
		})
	}
}
