package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/cni"
)

// TestAddGetsTheFamiliesThePoolsOffer: with assign_ipv4/assign_ipv6
// unset, one ADD gets one address of each family a usable pool offers; set,
// they decide (issue 16: both default to what the pools offer; Calico
// #10834 lost IPv6 when assign_ipv4 was set). The result and the
// WorkloadEndpoint carry every address.
func TestAddGetsTheFamiliesThePoolsOffer(t *testing.T) {
	v4 := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "v4"}, Spec: api.IPPoolSpec{CIDR: "10.9.0.0/24", BlockSize: 28}}
	v6 := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "v6"}, Spec: api.IPPoolSpec{CIDR: "fd00:9::/120", BlockSize: 122}}
	v4off := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "v4"}, Spec: api.IPPoolSpec{CIDR: "10.9.0.0/24", BlockSize: 28, Disabled: true}}
	v6elsewhere := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "v6"}, Spec: api.IPPoolSpec{CIDR: "fd00:9::/120", BlockSize: 122, NodeSelector: "rack == 'r9'"}}
	tests := []struct {
		name    string
		pools   []*api.IPPool
		ipam    string // the ipam section's extra fields
		want    []string
		wantErr string
	}{
		{"dual by default", []*api.IPPool{v4, v6}, ``, []string{"4", "6"}, ""},
		{"ipv4 only cluster", []*api.IPPool{v4}, ``, []string{"4"}, ""},
		{"ipv6 only cluster", []*api.IPPool{v6}, ``, []string{"6"}, ""},
		{"ipv4 pool disabled", []*api.IPPool{v4off, v6}, ``, []string{"6"}, ""},
		{"ipv6 pool for other nodes", []*api.IPPool{v4, v6elsewhere}, ``, []string{"4"}, ""},
		{"assign_ipv4 set keeps ipv6", []*api.IPPool{v4, v6}, `,"assign_ipv4":"true"`, []string{"4", "6"}, ""},
		{"assign_ipv6 false", []*api.IPPool{v4, v6}, `,"assign_ipv6":"false"`, []string{"4"}, ""},
		{"assign_ipv4 false", []*api.IPPool{v4, v6}, `,"assign_ipv4":"false"`, []string{"6"}, ""},
		{"ipv6_pools named", []*api.IPPool{v4, v6}, `,"ipv6_pools":["v6"],"assign_ipv4":"false"`, []string{"6"}, ""},
		{"assign_ipv6 without pool", []*api.IPPool{v4}, `,"assign_ipv6":"true"`, nil, "no IPv6 pool can be used"},
		{"no pool at all", nil, ``, nil, "no IPv4 pool can be used"},
		{"only a pool for other nodes", []*api.IPPool{v6elsewhere}, `,"assign_ipv4":"false"`, nil, `no IPv6 pool can be used by node "n1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := familyRig(t, tc.pools)
			conf, err := cni.ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"net1","type":"tabby","ipam":{"type":"tabby-ipam"` + tc.ipam + `}}`))
			if err != nil {
				t.Fatal(err)
			}
			req := &cni.Request{Command: "ADD", ContainerID: "c1", NetNS: "/var/run/netns/fake-c1", IfName: "eth0", NetConf: conf}
			res, err := a.Add(context.Background(), req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ADD: got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			var got []string
			for _, ip := range res.IPs {
				a, _ := netip.AddrFromSlice(ip.Address.IP)
				got = append(got, map[bool]string{true: "4", false: "6"}[a.Unmap().Is4()])
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("families of the result's addresses (-want +got):\n%s", d)
			}
			r, err := a.client.Get(context.Background(), "WorkloadEndpoint", "default", a.endpointName(&cni.Identity{Orchestrator: "cni", Workload: "c1", InterfaceName: "eth0"}))
			if err != nil {
				t.Fatalf("endpoint: %v", err)
			}
			if n := len(r.(*api.WorkloadEndpoint).Spec.IPNetworks); n != len(tc.want) {
				t.Errorf("endpoint ipNetworks: got %v, want %d addresses", r.(*api.WorkloadEndpoint).Spec.IPNetworks, len(tc.want))
			}
		})
	}
}

// familyRig is an agent on memstore and the fake wirer whose cache holds
// pools (as its watch would) and Node n1.
func familyRig(t *testing.T, pools []*api.IPPool) *Agent {
	t.Helper()
	g := newReaperRig(t)
	a := g.a
	ctx := context.Background()
	a.cache = newCache(a.client, []string{"WorkloadEndpoint", "Profile", "IPPool", "Node"}, a.log)
	// The rig's own pool p is replaced by the test's.
	if _, err := a.client.Delete(ctx, "IPPool", "", "p", ""); err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		p := api.DeepCopy(p).(*api.IPPool)
		w, err := a.client.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		a.cache.put("IPPool", w)
	}
	n, err := a.client.Get(ctx, "Node", "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	a.cache.put("Node", n)
	a.cfg.ResyncInterval = time.Hour
	a.syncReqs = make(chan chan error, 16)
	a.ready.Store(true)
	ctx, cancel := context.WithCancel(ctx)
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); _ = a.dataplaneLoop(ctx) }()
	t.Cleanup(func() { cancel(); <-loopDone })
	return a
}
