package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// dialOK dials addr (tcp) from namespace ns, polling until it connects
// or the deadline passes.
func dialOK(t *testing.T, ns string, addr netip.AddrPort) {
	t.Helper()
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, derr := DialIn(ctx, ns, "tcp", addr.String())
		cancel()
		if err = derr; err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dial %s from %s: %v", addr, ns, err)
}

// A dual-stack lab: IPv6 fabric on unique local addresses across the
// router, both pools, the datastore over both families.
func TestPrivilegedDualStackFabric(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("df"), Nodes: 2, Racks: 2, IPFamily: Dual})
	st := l.State()
	h2, _ := st.Host("h2")
	if h2.Rack != 2 || !h2.IP6.IsValid() {
		t.Fatalf("h2: got rack %d, IPv6 %v; want rack 2 with an IPv6 address", h2.Rack, h2.IP6)
	}
	// h2 is in rack 2: it reaches the master's datastore over IPv6
	// through the router, and over IPv4.
	dialOK(t, h2.Namespace, netip.AddrPortFrom(st.Master.IP6.Addr(), EtcdPort))
	dialOK(t, h2.Namespace, netip.AddrPortFrom(st.Master.IP.Addr(), EtcdPort))

	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := datastore.NewClient(s)
	for name, cidr := range map[string]netip.Prefix{PoolName: DefaultPool, Pool6Name: DefaultPool6} {
		r, err := c.Get(context.Background(), "IPPool", "", name)
		if err != nil {
			t.Fatalf("pool %s: %v", name, err)
		}
		if got := r.(*api.IPPool).Spec.CIDR; got != cidr.String() {
			t.Errorf("pool %s: got CIDR %s, want %s", name, got, cidr)
		}
	}
	// Each agent registered its IPv6 address for BGP.
	r, err := c.Get(context.Background(), "Node", "", "h2")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.(*api.Node).Spec.BGP.IPv6Address; got != h2.IP6.String() {
		t.Errorf("node h2: got bgp.ipv6Address %q, want %s", got, h2.IP6)
	}
}
