package nft

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// domainRuleState has one local workload whose egress allows DNS (UDP
// and TCP port 53) and TCP to the domains (learned sets), and DNS
// interception to hostIP:1053.
func domainRuleState(c *container, domains ...string) *policy.State {
	s := labState(wepFor(c, map[string]string{"app": "client"}, "calico"))
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{GNP("by-name", 1, "app == 'client'", nil, []api.Rule{
		{Action: "Allow", Protocol: Proto("UDP"), Destination: api.EntityRule{Ports: Ports("53")}},
		{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Ports: Ports("53")}},
		{Action: "Allow", Protocol: Proto("TCP"), Destination: api.EntityRule{Domains: domains}},
	}, "Egress")}
	s.DNS = &policy.DNSPolicy{Redirect4: netip.MustParseAddrPort(hostIP + ":1053"), MaxElements: 64, Resolvers: []netip.Addr{netip.MustParseAddr(stubIP)}}
	return s
}

func learnedSet(t testing.TB, rs *policy.Ruleset, family int) *policy.Set {
	t.Helper()
	for _, s := range rs.DomainSets() {
		if s.Type.Family() == family {
			return s
		}
	}
	t.Fatalf("no learned set of IPv%d in\n%s", family, rs.Render())
	return nil
}

// TestPrivilegedLearnedSets: the driver creates learned sets as timeout
// sets and leaves their elements alone; a re-add refreshes the timeout;
// a new driver (an agent restart) applying the same ruleset keeps them;
// elements expire.
func TestPrivilegedLearnedSets(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "tbyl-")
	c := &container{name: "a", ifName: "tbya", addr: netip.MustParseAddr("10.65.0.2")}
	rs := mustCompile(t, domainRuleState(c, "*.ok.test"))
	d := ns.driver()
	mustApply(t, d, rs)
	set4 := learnedSet(t, rs, 4)
	l := NewLearner(int(ns.fd.Fd()))
	t.Cleanup(func() { l.Close() })
	ctx := context.Background()
	a1, a2 := netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("192.0.2.22")
	if err := l.Add(ctx, []policy.Learned{{Set: set4.Name, Addr: a1, Timeout: 2 * time.Second}, {Set: set4.Name, Addr: a2, Timeout: time.Minute}}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := l.Add(ctx, []policy.Learned{{Set: set4.Name, Addr: a1, Timeout: time.Minute}}); err != nil {
		t.Fatalf("Add (refresh): %v", err)
	}
	left := func() map[netip.Addr]time.Duration {
		t.Helper()
		got, err := l.Dump(ctx)
		if err != nil {
			t.Fatalf("Dump: %v", err)
		}
		m := map[netip.Addr]time.Duration{}
		for _, e := range got {
			m[e.Addr] = e.Timeout
		}
		return m
	}
	if m := left(); m[a1] < 30*time.Second || m[a2] < 30*time.Second {
		t.Fatalf("time left = %v, want both about a minute (the re-add refreshes)", m)
	}

	// Apply again, and from a new driver: the learned elements stay.
	mustApply(t, d, mustCompile(t, domainRuleState(c, "*.ok.test")))
	ch := mustApply(t, ns.driver(), mustCompile(t, domainRuleState(c, "*.ok.test")))
	if ch.Replaced || ch.ElementsDeleted > 0 {
		t.Errorf("a new driver's first Apply = %+v, want no replace and no element deleted", ch)
	}
	if m := left(); len(m) != 2 {
		t.Fatalf("after a restart the learned set holds %v, want %v and %v", m, a1, a2)
	}
	out := ns.nft(t, "list", "set", "inet", "tabby", set4.Name)
	for _, want := range []string{"flags timeout", "size 64", "192.0.2.21 timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list set: no %q in\n%s", want, out)
		}
	}

	// Expiry.
	if err := l.Add(ctx, []policy.Learned{{Set: set4.Name, Addr: netip.MustParseAddr("192.0.2.23"), Timeout: 300 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, ok := left()[netip.MustParseAddr("192.0.2.23")]; ok {
		t.Error("an element with a 300ms timeout is still there after 1s")
	}
}

// BenchmarkLearnerAdd: one answer's write (one address, one set) until
// the kernel's ack, as the forwarder does before replying.
func BenchmarkLearnerAdd(b *testing.B) {
	requireRoot(b)
	ns := newNS(b, "tbylb-")
	c := &container{name: "a", ifName: "tbya", addr: netip.MustParseAddr("10.65.0.2")}
	st := domainRuleState(c, "*.ok.test")
	st.DNS.MaxElements = 1 << 20
	rs := mustCompile(b, st)
	mustApply(b, ns.driver(), rs)
	set := learnedSet(b, rs, 4).Name
	l := NewLearner(int(ns.fd.Fd()))
	b.Cleanup(func() { l.Close() })
	b.ResetTimer()
	for i := range b.N {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := l.Add(context.Background(), []policy.Learned{{Set: set, Addr: a, Timeout: time.Minute}}); err != nil {
			b.Fatal(err)
		}
	}
}
