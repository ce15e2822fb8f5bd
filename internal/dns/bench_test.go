package dns

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// BenchmarkQueryUDP measures queries per second for a cached name over
// loopback UDP (client and server share the machine's cores).
func BenchmarkQueryUDP(b *testing.B) {
	fm := newFakeMaster(b, readFixture(b))
	ts := startServer(b, nil, func(c *Config) { c.Masters = []string{fm.URL}; c.RefreshSeconds = 60 })
	req := new(mdns.Msg).SetQuestion("myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeA)
	wire, err := req.Pack()
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("udp", ts.dns)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		buf := make([]byte, 1500)
		for pb.Next() {
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write(wire); err != nil {
				b.Error(err)
				return
			}
			n, err := conn.Read(buf)
			if err != nil || n < 12 || buf[3]&0xf != 0 {
				b.Errorf("bad answer: %d bytes, %v", n, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
}

// benchmarkEndpointToResolvable measures the time from a WorkloadEndpoint
// write being committed (Create returned) to its name resolving ("add"),
// and from its delete being committed to the name being gone ("del"),
// p50/p99 over b.N endpoints; "write" is the datastore write itself.
func benchmarkEndpointToResolvable(b *testing.B, store datastore.Store) {
	c := datastore.NewClient(store)
	mustCreate(b, c, testNode("agent-1", "10.0.1.11"))
	// Some background: 500 other endpoints.
	for i := range 500 {
		mustCreate(b, c, testEndpoint("bg", fmt.Sprintf("bg-%d", i), "agent-1", fmt.Sprintf("bg-%d", i), fmt.Sprintf("172.30.%d.%d", i/250, i%250+1)))
	}
	ts := startServer(b, store, nil)
	client := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	resolvable := func(name string) bool {
		resp, _, err := client.Exchange(new(mdns.Msg).SetQuestion(name, mdns.TypeA), ts.dns)
		return err == nil && len(resp.Answer) > 0
	}
	var add, del, write []time.Duration
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("w%d", i)
		fqdn := name + ".bench.mesos."
		begin := time.Now()
		mustCreate(b, c, testEndpoint("bench", name, "agent-1", name, fmt.Sprintf("172.31.%d.%d", i/250%250, i%250+1)))
		start := time.Now()
		write = append(write, start.Sub(begin))
		for !resolvable(fqdn) {
			time.Sleep(100 * time.Microsecond)
		}
		add = append(add, time.Since(start))
		if _, err := c.Delete(ctx, "WorkloadEndpoint", "bench", name, ""); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for resolvable(fqdn) {
			time.Sleep(100 * time.Microsecond)
		}
		del = append(del, time.Since(start))
	}
	b.StopTimer()
	report := func(ds []time.Duration, what string) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, what+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, what+"-p99-ms")
	}
	report(write, "write")
	report(add, "add")
	report(del, "del")
}

func BenchmarkEndpointToResolvableMemstore(b *testing.B) {
	benchmarkEndpointToResolvable(b, memstore.New())
}

func BenchmarkEndpointToResolvableEtcd(b *testing.B) {
	benchmarkEndpointToResolvable(b, etcdtest.New(b))
}

// BenchmarkRebuild10k is one full rebuild (records and snapshot) with
// 10,000 endpoints on 100 nodes: the builder's cost per datastore change.
func BenchmarkRebuild10k(b *testing.B) {
	srv, err := New(DefaultConfig(), Options{Store: memstore.New()})
	if err != nil {
		b.Fatal(err)
	}
	ds := srv.ds
	for i := range 100 {
		n := testNode(fmt.Sprintf("host-%d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
		ds.nodes[n.Name] = n
	}
	for i := range 10000 {
		ep := testEndpoint("default", fmt.Sprintf("ep-%d", i), fmt.Sprintf("host-%d", i%100), fmt.Sprintf("app-%d", i/3), fmt.Sprintf("172.29.%d.%d", i/250, i%250+1))
		if i%2 == 0 {
			ep.Spec.Mesos = &api.MesosInfo{App: fmt.Sprintf("/group/app-%d", i/3), TaskID: fmt.Sprintf("task-%d", i)}
			ep.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: api.ProtocolTCP, Port: 80}}
		}
		ds.weps[resourceKey(ep)] = ep
	}
	ds.synced[kindEndpoint], ds.synced[kindNode], ds.synced[kindPool] = true, true, true
	b.ReportAllocs()
	for b.Loop() {
		srv.rebuild()
	}
	b.ReportMetric(float64(len(srv.snap.Load().names)), "names")
}
