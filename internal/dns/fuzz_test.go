package dns

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/dns/mesos"
	"github.com/tabbynet/tabby/internal/dns/records"
)

// fixtureHandler answers from the Mesos fixture plus a few endpoints, in
// process, without forwarding.
func fixtureHandler(t testing.TB) *handler {
	t.Helper()
	st, err := mesos.Decode(readFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Masters = []string{"10.0.4.10:5050"}
	cfg.Normalize()
	eps := []*api.WorkloadEndpoint{testEndpoint("shop", "web-1", "agent-1", "web", "172.29.1.20", "fd00:29::1:20")}
	for i := range 40 {
		eps = append(eps, testEndpoint("shop", "big-"+string(rune('a'+i)), "agent-1", "big", netip.AddrFrom4([4]byte{172, 29, 7, byte(i + 1)}).String()))
	}
	set := records.Build(cfg.recordsConfig([]netip.Addr{netip.MustParseAddr("127.0.0.1")}), records.Input{
		Mesos: st, Endpoints: eps, Nodes: []*api.Node{testNode("agent-1", "10.0.1.11")},
	})
	var p atomic.Pointer[snapshot]
	p.Store(newSnapshot(set, 1, true))
	return &handler{snap: &p, m: newMetrics(), log: slog.New(slog.DiscardHandler), recurse: true, truncBit: true}
}

func packed(t testing.TB, name string, qtype uint16, edit ...func(*mdns.Msg)) []byte {
	m := new(mdns.Msg).SetQuestion(name, qtype)
	for _, e := range edit {
		e(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzHandler feeds arbitrary messages to the query handler: it must not
// panic, must answer with the query's ID, and its answer must pack and fit
// what the client can receive.
func FuzzHandler(f *testing.F) {
	edns := func(m *mdns.Msg) { m.SetEdns0(4096, true) }
	f.Add(packed(f, "myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeA))
	f.Add(packed(f, "_myapp-subgroup-outergroup._tcp.marathon.mesos.", mdns.TypeSRV, edns))
	f.Add(packed(f, "mesos.", mdns.TypeANY))
	f.Add(packed(f, "mesos.", mdns.TypeNS))
	f.Add(packed(f, "dcos.thisdcos.directory.", mdns.TypeSOA))
	f.Add(packed(f, "big.shop.mesos.", mdns.TypeA))
	f.Add(packed(f, "big.shop.mesos.", mdns.TypeANY, edns))
	f.Add(packed(f, "20.1.29.172.in-addr.arpa.", mdns.TypePTR))
	f.Add(packed(f, "MARATHON.slave.MESOS.", mdns.TypeTXT))
	f.Add(packed(f, "example.com.", mdns.TypeA))
	f.Add(packed(f, "mesos.", mdns.TypeAXFR))
	f.Add(packed(f, "leader.mesos.", mdns.TypeA, func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassCHAOS }))
	f.Add(packed(f, "leader.mesos.", mdns.TypeA, func(m *mdns.Msg) { m.SetEdns0(512, false); m.IsEdns0().SetVersion(3) }))
	f.Add([]byte("\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x00\x01\x00\x01"))
	h := fixtureHandler(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		for _, udp := range []bool{true, false} {
			resp := h.respond(context.Background(), req, netip.MustParseAddr("127.0.0.1"), udp)
			if resp == nil {
				if !req.Response {
					t.Fatalf("no answer to a query: %v", req)
				}
				continue
			}
			if resp.Id != req.Id {
				t.Fatalf("answer ID %d, query ID %d", resp.Id, req.Id)
			}
			b, err := resp.Pack()
			if err != nil {
				t.Fatalf("answer does not pack: %v\n%v", err, resp)
			}
			if limit := maxUDPSize(req); udp && len(b) > limit {
				t.Fatalf("UDP answer of %d bytes, the client takes %d", len(b), limit)
			}
		}
	})
}

// BenchmarkRespond is the handler alone: no sockets, no packing.
func BenchmarkRespond(b *testing.B) {
	h := fixtureHandler(b)
	req := new(mdns.Msg).SetQuestion("myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeA)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h.respond(ctx, req, netip.MustParseAddr("127.0.0.1"), true)
	}
}
