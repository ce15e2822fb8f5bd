package nft

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
	"github.com/tabbynet/tabby/internal/api"
)

// freshDump applies rs to a new namespace with a new driver and returns
// the kernel dump: the reference every other path must reach.
func freshDump(t *testing.T, rs *policy.Ruleset) string {
	t.Helper()
	ns := newNS(t, "tbyfr-")
	d := ns.driver()
	mustApply(t, d, rs)
	return mustDump(t, d)
}

// TestPrivilegedApplyIdempotent: every representative state applies; then
// applying it again changes nothing, whether the driver trusts its cache
// or reads the kernel back (which proves that what we write reads back
// as what we meant).
func TestPrivilegedApplyIdempotent(t *testing.T) {
	requireRoot(t)
	for _, name := range StateNames() {
		t.Run(name, func(t *testing.T) {
			ns := newNS(t, "tbyid-")
			d := ns.driver()
			rs := mustCompile(t, States()[name])
			ch := mustApply(t, d, rs)
			if !ch.Committed || !ch.Replaced {
				t.Errorf("first Apply: %+v, want a commit that builds the table", ch)
			}
			if ch := mustApply(t, d, rs); ch.Committed || ch.Resynced {
				t.Errorf("second Apply: %+v, want nothing to do without reading the kernel", ch)
			}
			d.valid = false
			if ch := mustApply(t, d, rs); ch.Committed || !ch.Resynced {
				t.Errorf("Apply after reading the kernel back: %+v, want no commit", ch)
			}
			out := ns.nft(t, "list", "table", "inet", policy.TableName)
			if !strings.Contains(out, "chain forward") {
				t.Errorf("nft list table does not show the forward chain:\n%s", out)
			}
		})
	}
}

// TestPrivilegedTransitions: going from any state to any other ends in
// the same kernel table as applying the target directly.
func TestPrivilegedTransitions(t *testing.T) {
	requireRoot(t)
	names := StateNames()
	fresh := map[string]string{}
	for _, n := range names {
		fresh[n] = freshDump(t, mustCompile(t, States()[n]))
	}
	ns := newNS(t, "tbytr-")
	d := ns.driver()
	for _, from := range names {
		for _, to := range names {
			if from == to {
				continue
			}
			mustApply(t, d, mustCompile(t, States()[from]))
			mustApply(t, d, mustCompile(t, States()[to]))
			if diff := cmp.Diff(fresh[to], mustDump(t, d)); diff != "" {
				t.Errorf("%s → %s: kernel differs from a fresh apply of %s (-fresh +got):\n%s", from, to, to, diff)
			}
		}
	}
}

// TestPrivilegedOtherTablesUntouched: Tabby's table lives next to others
// (iptables-nft, docker, the admin's) and never touches them.
func TestPrivilegedOtherTablesUntouched(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "tbyot-")
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.fd.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyIPv4} {
		tb := c.AddTable(&nftables.Table{Name: "admin", Family: fam})
		ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	other := func() string {
		t.Helper()
		var b strings.Builder
		tables, err := c.ListTables()
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			if tb.Name == policy.TableName {
				continue
			}
			rules, err := c.GetRules(tb, &nftables.Chain{Name: "forward", Table: tb})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %d %d\n", tb.Name, tb.Family, len(rules))
		}
		return b.String()
	}
	before := other()
	d := ns.driver()
	for _, name := range StateNames() {
		mustApply(t, d, mustCompile(t, States()[name]))
	}
	d.valid = false
	mustApply(t, d, mustCompile(t, CNINetwork()))
	if err := d.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := other(); got != before {
		t.Errorf("other tables changed:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	if err := d.Delete(context.Background()); err != nil {
		t.Errorf("Delete of a missing table: %v", err)
	}
}

// TestPrivilegedRepairsDrift: whatever someone does to the table by hand,
// the next Apply notices (the ruleset generation moved) and restores it.
func TestPrivilegedRepairsDrift(t *testing.T) {
	requireRoot(t)
	rs := mustCompile(t, PortMappings())
	want := freshDump(t, rs)
	tb := tableRef()
	tests := []struct {
		name   string
		tamper func(t *testing.T, c *nftables.Conn, ns *testNS)
	}{
		{"table deleted", func(t *testing.T, c *nftables.Conn, ns *testNS) { c.DelTable(tb) }},
		{"rule deleted", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			ch := &nftables.Chain{Name: "forward", Table: tb}
			rules, err := c.GetRules(tb, ch)
			if err != nil || len(rules) == 0 {
				t.Fatalf("rules of forward: %v, %v", rules, err)
			}
			if err := c.DelRule(rules[0]); err != nil {
				t.Fatal(err)
			}
		}},
		{"rule added", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			c.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: "anti-spoof", Table: tb},
				Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		}},
		{"rule replaced", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			ch := &nftables.Chain{Name: "to-wl", Table: tb}
			rules, err := c.GetRules(tb, ch)
			if err != nil || len(rules) == 0 {
				t.Fatalf("rules of to-wl: %v, %v", rules, err)
			}
			last := rules[len(rules)-1]
			last.Exprs = []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
			c.ReplaceRule(last)
		}},
		{"chain added", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			c.AddChain(&nftables.Chain{Name: "intruder", Table: tb})
		}},
		{"chain deleted", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			ch := &nftables.Chain{Name: "pm-" + IfDB, Table: tb}
			c.FlushChain(ch)
			m := &nftables.Set{Table: tb, Name: policy.MapHostPorts}
			c.FlushSet(m)
			c.DelChain(ch)
		}},
		{"base chain priority changed", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			ns.nft(t, "delete", "chain", "inet", policy.TableName, "output")
			ns.nft(t, "add", "chain", "inet", policy.TableName, "output", "{ type filter hook output priority 10; }")
		}},
		{"set element deleted", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			s := &nftables.Set{Table: tb, Name: policy.SetWorkloadSrc4}
			if err := c.SetDeleteElements(s, elements(setTokens(rs.Set(policy.SetWorkloadSrc4))[:1])); err != nil {
				t.Fatal(err)
			}
		}},
		{"set element added", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			s := &nftables.Set{Table: tb, Name: policy.SetPools4}
			el := setTokens(&policy.Set{Type: policy.SetAddr4, Elements: []policy.Element{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}}})
			if err := c.SetAddElements(s, elements(el)); err != nil {
				t.Fatal(err)
			}
		}},
		{"map element redirected", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			ns.nft(t, "delete", "element", "inet", policy.TableName, policy.MapToWorkload, "{ \""+IfWeb+"\" }")
			ns.nft(t, "add", "element", "inet", policy.TableName, policy.MapToWorkload, "{ \""+IfWeb+"\" : accept }")
		}},
		{"set recreated with another type", func(t *testing.T, c *nftables.Conn, ns *testNS) {
			ns.nft(t, "flush", "chain", "inet", policy.TableName, "nat-postrouting")
			ns.nft(t, "delete", "set", "inet", policy.TableName, policy.SetPools4)
			ns.nft(t, "add", "set", "inet", policy.TableName, policy.SetPools4, "{ type ipv4_addr; }")
		}},
		{"whole ruleset flushed", func(t *testing.T, c *nftables.Conn, ns *testNS) { c.FlushRuleset() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t, "tbydr-")
			d := ns.driver()
			mustApply(t, d, rs)
			c, err := nftables.New(nftables.WithNetNSFd(int(ns.fd.Fd())))
			if err != nil {
				t.Fatal(err)
			}
			tc.tamper(t, c, ns)
			if err := c.Flush(); err != nil {
				t.Fatalf("tamper: %v", err)
			}
			if mustDump(t, d) == want {
				t.Fatal("tampering changed nothing")
			}
			ch := mustApply(t, d, rs)
			if !ch.Resynced || !ch.Committed {
				t.Errorf("Apply after tampering: %+v, want a resync and a commit", ch)
			}
			if diff := cmp.Diff(want, mustDump(t, d)); diff != "" {
				t.Errorf("table not restored (-want +got):\n%s", diff)
			}
			if ch := mustApply(t, d, rs); ch.Committed || ch.Resynced {
				t.Errorf("Apply after the repair: %+v, want nothing to do", ch)
			}
		})
	}
}

// scaleState is a cluster of n remote workloads in one network plus two
// local ones, with a few policies whose selectors each match many.
func scaleState(n int) *policy.State {
	s := CNINetwork()
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, 80 + byte(i>>16), byte(i >> 8), byte(i)})
		app := []string{"web", "db", "cache", "api"}[i%4]
		s.Endpoints = append(s.Endpoints, WEP(fmt.Sprintf("node-%d", i%50), "default", fmt.Sprintf("ep-%d", i),
			fmt.Sprintf("tby%d", i), []string{a.String() + "/32"}, map[string]string{"app": app}, "calico"))
	}
	s.Policies = []*api.NetworkPolicy{
		NP("default", "db", 1, "app == 'db'", []api.Rule{
			{Action: "Allow", Protocol: Proto("TCP"), Source: api.EntityRule{Selector: "app == 'web'"}, Destination: api.EntityRule{Ports: Ports("5432")}},
			{Action: "Allow", Source: api.EntityRule{Selector: "app in {'api', 'cache'}"}},
		}, nil),
	}
	return s
}

// TestPrivilegedAddEndpointIsElementAdd: a workload appearing elsewhere in
// the cluster costs element adds in the sets that select it and nothing
// else — no chain is written; a local one adds its own two chains and
// map elements, and rewrites no existing chain.
func TestPrivilegedAddEndpointIsElementAdd(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "tbyae-")
	d := ns.driver()
	s := scaleState(10000)
	mustApply(t, d, mustCompile(t, s))

	remote := WEP("node-x", "default", "new-web", "tbynew", []string{"10.99.0.1/32"}, map[string]string{"app": "web"}, "calico")
	s.Endpoints = append(s.Endpoints, remote)
	ch := mustApply(t, d, mustCompile(t, s))
	// The web set of the db policy and the network's set; each an
	// interval: start and end.
	want := Change{Committed: true, ElementsAdded: 4}
	if diff := cmp.Diff(want, ch, addrCmp); diff != "" {
		t.Errorf("adding a remote endpoint (-want +got):\n%s", diff)
	}

	local := WEP(Node, "default", "new-db", "tbylocal", []string{"10.65.0.9/32"}, map[string]string{"app": "db"}, "calico")
	s.Endpoints = append(s.Endpoints, local)
	ch = mustApply(t, d, mustCompile(t, s))
	// Its ingress and egress chains; elements: the network's set (2),
	// wl-src4, from-wl, to-wl.
	want = Change{Committed: true, ChainsAdded: 2, ElementsAdded: 5}
	if diff := cmp.Diff(want, ch, addrCmp); diff != "" {
		t.Errorf("adding a local endpoint (-want +got):\n%s", diff)
	}

	s.Endpoints = s.Endpoints[:len(s.Endpoints)-1]
	ch = mustApply(t, d, mustCompile(t, s))
	want = Change{Committed: true, ChainsDeleted: 2, ElementsDeleted: 5, ConntrackFlushed: []netip.Addr{netip.MustParseAddr("10.65.0.9")}}
	if diff := cmp.Diff(want, ch, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("removing the local endpoint (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(freshDump(t, mustCompile(t, s)), mustDump(t, d)); diff != "" {
		t.Errorf("kernel differs from a fresh apply (-fresh +got):\n%s", diff)
	}
}

// TestPrivilegedLargeSets: a set of 100,000 elements loads, reads back
// and takes single-element updates.
func TestPrivilegedLargeSets(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("large")
	}
	ns := newNS(t, "tbyls-")
	d := ns.driver()
	s := CNINetwork()
	var nets []string
	for i := 0; i < 100000; i++ {
		nets = append(nets, netip.AddrFrom4([4]byte{172, 16 + byte(i>>16), byte(i >> 8), byte(i)}).String())
	}
	s.GlobalNetworkSets = []*api.GlobalNetworkSet{GNS("big", map[string]string{"big": ""}, nets...)}
	s.GlobalPolicies = []*api.GlobalNetworkPolicy{GNP("big", 1, "all()", []api.Rule{{Action: "Deny", Source: api.EntityRule{Selector: "has(big)"}}, {Action: "Allow"}}, nil)}
	rs := mustCompile(t, s)
	mustApply(t, d, rs)
	d.valid = false
	if ch := mustApply(t, d, rs); ch.Committed {
		t.Errorf("re-apply after reading 100k elements back: %+v, want nothing to do", ch)
	}
	s.GlobalNetworkSets[0].Spec.Nets = append(nets[1:], "172.31.0.1")
	ch := mustApply(t, d, mustCompile(t, s))
	want := Change{Committed: true, ElementsAdded: 2, ElementsDeleted: 2}
	if diff := cmp.Diff(want, ch, addrCmp); diff != "" {
		t.Errorf("changing one of 100k elements (-want +got):\n%s", diff)
	}
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// TestPrivilegedMonitor: with Run following nftables notifications, a
// commit to another table does not make Apply read the table back, and a
// commit to ours still does (and is repaired).
func TestPrivilegedMonitor(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "tbymo-")
	d := ns.driver()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for deadline := time.Now().Add(okDeadline); ; time.Sleep(10 * time.Millisecond) {
		d.mu.Lock()
		running := d.monitor != nil
		d.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not start")
		}
	}
	rs := mustCompile(t, PortMappings())
	if d.Current() {
		t.Error("Current before the first Apply: true, want false")
	}
	mustApply(t, d, rs)
	if !d.Current() {
		t.Error("Current right after Apply: false, want true")
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.fd.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	foreign := func(name string) {
		t.Helper()
		c.AddTable(&nftables.Table{Name: name, Family: nftables.TableFamilyIPv4})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// The first foreign commit may come before the monitor saw a whole
	// transaction; from the second on it must know.
	foreign("other1")
	mustApply(t, d, rs)
	for i := 2; i <= 4; i++ {
		foreign(fmt.Sprintf("other%d", i))
		if !d.Current() {
			t.Errorf("Current after a commit to another table (other%d): false, want true", i)
		}
		if ch := mustApply(t, d, rs); ch.Resynced || ch.Committed {
			t.Errorf("Apply after a commit to another table: %+v, want no resync", ch)
		}
	}
	c.FlushChain(&nftables.Chain{Name: "forward", Table: tableRef()})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// A hand edit of our table: the agent's periodic resync must not be
	// skipped.
	if d.Current() {
		t.Error("Current after a hand edit of our table: true, want false")
	}
	if ch := mustApply(t, d, rs); !ch.Resynced || ch.ChainsRewritten != 1 {
		t.Errorf("Apply after a hand edit of our table: %+v, want a resync rewriting one chain", ch)
	}
	// Our own commits touch our table but do not count.
	mustApply(t, d, mustCompile(t, CNINetwork()))
	foreign("other5")
	if ch := mustApply(t, d, rs); ch.Resynced {
		t.Errorf("Apply after our own commit: %+v, want no resync", ch)
	}
}
