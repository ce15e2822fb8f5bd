package dns

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/dns/records"
)

// resolves reports the A/AAAA answer of name over UDP.
func resolves(t testing.TB, addr, name string, qtype uint16) []string {
	t.Helper()
	return rrStrings(query(t, addr, "udp", name, qtype).Answer)
}

// testLiveness writes an endpoint and deletes it, polling until the name
// appears and disappears (the time is logged, not asserted).
func testLiveness(t *testing.T, store datastore.Store) {
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("host-1", "10.0.1.11"))
	ts := startServer(t, store, nil)

	const name = "web.shop.mesos."
	if got := resolves(t, ts.dns, name, mdns.TypeA); got != nil {
		t.Fatalf("%s resolves before the endpoint exists: %v", name, got)
	}
	start := time.Now()
	mustCreate(t, c, testEndpoint("shop", "host-1-web-1-eth0", "host-1", "web", "172.29.1.20", "fd00:29::1:20"))
	waitFor(t, name+" to resolve", func() bool { return len(resolves(t, ts.dns, name, mdns.TypeA)) == 1 })
	t.Logf("resolvable %v after the write", time.Since(start))
	if diff := cmp.Diff([]string{"AAAA fd00:29::1:20"}, resolves(t, ts.dns, name, mdns.TypeAAAA)); diff != "" {
		t.Errorf("AAAA (-want +got):\n%s", diff)
	}
	ptr := query(t, ts.dns, "udp", "20.1.29.172.in-addr.arpa.", mdns.TypePTR)
	if diff := cmp.Diff([]string{"PTR web.shop.mesos."}, rrStrings(ptr.Answer)); diff != "" {
		t.Errorf("PTR (-want +got):\n%s", diff)
	}

	start = time.Now()
	if _, err := c.Delete(context.Background(), "WorkloadEndpoint", "shop", "host-1-web-1-eth0", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, name+" to be gone", func() bool {
		return query(t, ts.dns, "udp", name, mdns.TypeA).Rcode == mdns.RcodeNameError
	})
	t.Logf("gone %v after the delete", time.Since(start))
}

func TestEndpointLivenessMemstore(t *testing.T) { testLiveness(t, memstore.New()) }

// One end-to-end run on a real (embedded) etcd.
func TestEndpointLivenessEtcd(t *testing.T) { testLiveness(t, etcdtest.New(t)) }

// A WorkloadEndpoint with spec.mesos gets the Mesos-DNS and DC/OS names
// from the datastore alone.
func TestMesosNamesFromDatastore(t *testing.T) {
	store := memstore.New()
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("agent-1", "10.0.1.11"))
	ep := testEndpoint("default", "agent-1-mesos-8d1f-eth0", "agent-1", "8d1f1f0e", "172.29.1.5")
	ep.Spec.Orchestrator = "mesos"
	ep.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: api.ProtocolTCP, Port: 80}}
	ep.Spec.Mesos = &api.MesosInfo{App: "/outergroup/subgroup/myapp", TaskID: "outergroup_subgroup_myapp.1"}
	mustCreate(t, c, ep)
	ts := startServer(t, store, nil)
	canonical := "myapp-subgroup-outergroup-" + records.TaskHash("outergroup_subgroup_myapp.1") + "-1.marathon.mesos."
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  []string
	}{
		{"myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeA, []string{"A 172.29.1.5"}},
		{"myapp-subgroup-outergroup.marathon.slave.mesos.", mdns.TypeA, []string{"A 10.0.1.11"}},
		{canonical, mdns.TypeA, []string{"A 172.29.1.5"}},
		{"_http._myapp-subgroup-outergroup._tcp.marathon.mesos.", mdns.TypeSRV, []string{"SRV 0 1 80 " + canonical}},
		{"myapp-subgroup-outergroup.marathon.containerip.dcos.thisdcos.directory.", mdns.TypeA, []string{"A 172.29.1.5"}},
		{"myapp-subgroup-outergroup.marathon.agentip.dcos.thisdcos.directory.", mdns.TypeA, []string{"A 10.0.1.11"}},
		{"myapp-subgroup-outergroup.marathon.autoip.dcos.thisdcos.directory.", mdns.TypeA, []string{"A 172.29.1.5"}},
		{"slave.mesos.", mdns.TypeA, []string{"A 10.0.1.11"}},
	} {
		if diff := cmp.Diff(tc.want, resolves(t, ts.dns, tc.name, tc.qtype)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// The agent IP follows the Node.
	n := testNode("agent-1", "10.0.1.99")
	if _, _, err := c.Apply(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new agent IP", func() bool {
		return cmp.Equal([]string{"A 10.0.1.99"}, resolves(t, ts.dns, "myapp-subgroup-outergroup.marathon.slave.mesos.", mdns.TypeA))
	})
}

// Names from the datastore and the Mesos master merge; a task known to both
// is served once.
func TestMergeDatastoreAndMesos(t *testing.T) {
	store := memstore.New()
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("agent-1", "10.0.1.11"))
	ep := testEndpoint("default", "agent-1-mesos-8d1f-eth0", "agent-1", "8d1f1f0e", "172.29.1.5")
	ep.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: api.ProtocolTCP, Port: 80}}
	ep.Spec.Mesos = &api.MesosInfo{App: "/outergroup/subgroup/myapp", TaskID: "outergroup_subgroup_myapp.instance-5c2b9d1e-8f3a-11e8-9a0b-70b3d5800001._app.1"}
	mustCreate(t, c, ep)
	mustCreate(t, c, testEndpoint("shop", "web-1", "agent-1", "web", "172.29.1.20"))
	fm := newFakeMaster(t, readFixture(t))
	ts := startServer(t, store, func(cfg *Config) { cfg.Masters = []string{fm.URL} })
	srv := query(t, ts.dns, "udp", "_myapp-subgroup-outergroup._tcp.marathon.mesos.", mdns.TypeSRV)
	if diff := cmp.Diff([]string{"SRV 0 1 80 " + myappCan}, rrStrings(srv.Answer)); diff != "" {
		t.Errorf("SRV (-want +got):\n%s", diff)
	}
	if got := resolves(t, ts.dns, "web.shop.mesos.", mdns.TypeA); len(got) != 1 {
		t.Errorf("web.shop.mesos. = %v", got)
	}
	if got := resolves(t, ts.dns, "node-0-server.cassandra.prod-1.mesos.", mdns.TypeA); len(got) != 1 {
		t.Errorf("Mesos-only task: %v", got)
	}
}

// A source started over a compacted history lists and keeps up (the
// relist after a watch hits a compaction is datastore.Reflector's, tested
// there).
func TestDatastoreCompaction(t *testing.T) {
	store := memstore.New()
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("agent-1", "10.0.1.11"))
	mustCreate(t, c, testEndpoint("shop", "a", "agent-1", "a", "172.29.1.1"))
	store.Compact(store.Revision())
	src := newDatastoreSource(store, slog.New(slog.DiscardHandler), newMetrics(), func() {})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); src.run(ctx) }()
	defer func() { cancel(); <-done }()
	mustCreate(t, c, testEndpoint("shop", "b", "agent-1", "b", "172.29.1.2"))
	waitFor(t, "both endpoints", func() bool {
		eps, _, _, synced := src.inputs()
		return synced && len(eps) == 2
	})
}

// TestBadRecordSkipped: garbage under a WorkloadEndpoint key and a Node
// key (in a real etcd) does not stop the server: the good names resolve,
// new ones follow, and an endpoint overwritten with garbage stops
// resolving (as a fresh listing would skip it) instead of stalling the kind.
func TestBadRecordSkipped(t *testing.T) {
	store := etcdtest.New(t)
	c := datastore.NewClient(store)
	ctx := context.Background()
	mustCreate(t, c, testNode("host-1", "10.0.1.11"))
	mustCreate(t, c, testEndpoint("shop", "web-1", "host-1", "web", "172.29.1.20"))
	mustCreate(t, c, testEndpoint("shop", "db-1", "host-1", "db", "172.29.1.21"))
	for _, key := range []string{
		datastore.KeyPrefix + "workloadendpoints/shop/garbage-1",
		datastore.KeyPrefix + "nodes/garbage-node",
	} {
		if _, err := store.Create(ctx, key, []byte("\x00\xffnot json")); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, store, nil)
	waitFor(t, "web.shop.mesos. to resolve", func() bool {
		return cmp.Equal([]string{"A 172.29.1.20"}, resolves(t, ts.dns, "web.shop.mesos.", mdns.TypeA))
	})
	mustCreate(t, c, testEndpoint("shop", "api-1", "host-1", "api", "172.29.1.22"))
	waitFor(t, "a new endpoint to resolve", func() bool {
		return cmp.Equal([]string{"A 172.29.1.22"}, resolves(t, ts.dns, "api.shop.mesos.", mdns.TypeA))
	})
	kv, err := store.Get(ctx, datastore.KeyPrefix+"workloadendpoints/shop/db-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, kv.Key, []byte("{broken"), kv.Revision); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the garbled endpoint to stop resolving", func() bool {
		return query(t, ts.dns, "udp", "db.shop.mesos.", mdns.TypeA).Rcode == mdns.RcodeNameError
	})
	if got := resolves(t, ts.dns, "web.shop.mesos.", mdns.TypeA); !cmp.Equal([]string{"A 172.29.1.20"}, got) {
		t.Errorf("web.shop.mesos. after the garbled put = %v", got)
	}
}

// Many endpoints of one workload make an answer too big for UDP: TC is
// set and TCP gives everything.
func TestTruncation(t *testing.T) {
	store := memstore.New()
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("agent-1", "10.0.1.11"))
	const n = 60
	for i := range n {
		mustCreate(t, c, testEndpoint("shop", fmt.Sprintf("big-%d", i), "agent-1", "big", fmt.Sprintf("172.29.7.%d", i+1)))
	}
	ts := startServer(t, store, nil)
	waitFor(t, "all endpoints", func() bool { return len(query(t, ts.dns, "tcp", "big.shop.mesos.", mdns.TypeA).Answer) == n })

	udp := query(t, ts.dns, "udp", "big.shop.mesos.", mdns.TypeA)
	if !udp.Truncated || len(udp.Answer) >= n {
		t.Errorf("UDP: TC=%v with %d answers, want TC and fewer than %d", udp.Truncated, len(udp.Answer), n)
	}
	edns := query(t, ts.dns, "udp", "big.shop.mesos.", mdns.TypeA, func(m *mdns.Msg) { m.SetEdns0(4096, false) })
	if edns.Truncated || len(edns.Answer) != n {
		t.Errorf("UDP with EDNS 4096: TC=%v with %d answers, want all %d", edns.Truncated, len(edns.Answer), n)
	}
	// A client that follows TC gets the full answer over TCP.
	c2 := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
	resp, _, err := c2.Exchange(new(mdns.Msg).SetQuestion("big.shop.mesos.", mdns.TypeA), ts.dns)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Truncated {
		c2.Net = "tcp"
		if resp, _, err = c2.Exchange(new(mdns.Msg).SetQuestion("big.shop.mesos.", mdns.TypeA), ts.dns); err != nil {
			t.Fatal(err)
		}
	}
	if len(resp.Answer) != n {
		t.Errorf("after the TCP retry: %d answers, want %d", len(resp.Answer), n)
	}
}
