package agent

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/cni"
)

// TestAddStaticAddressPerFamily: in a dual-stack cluster a static address
// (CNI_ARGS IP=) takes its own family's place only: a static IPv6 address
// keeps the IPv4 one automatic and the other way round, both can be given,
// and a static address inside an IPReservation is refused naming it
// (issue 16: static addresses and reservations work per family).
func TestAddStaticAddressPerFamily(t *testing.T) {
	v4 := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "v4"}, Spec: api.IPPoolSpec{CIDR: "10.9.0.0/24", BlockSize: 28}}
	v6 := &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "v6"}, Spec: api.IPPoolSpec{CIDR: "fd00:9::/120", BlockSize: 122}}
	tests := []struct {
		name    string
		args    string
		want    []string // static addresses the result must hold; "4"/"6": one automatic address of that family
		wantErr string
	}{
		{"static ipv6, automatic ipv4", "IP=fd00:9::5", []string{"4", "fd00:9::5"}, ""},
		{"static ipv4, automatic ipv6", "IP=10.9.0.7", []string{"10.9.0.7", "6"}, ""},
		{"both static", "IP=10.9.0.8,fd00:9::8", []string{"10.9.0.8", "fd00:9::8"}, ""},
		{"reserved ipv6", "IP=fd00:9::f1", nil, "fd00:9::f1 is reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := familyRig(t, []*api.IPPool{v4, v6})
			res := &api.IPReservation{ObjectMeta: api.ObjectMeta{Name: "r6"}, Spec: api.IPReservationSpec{ReservedCIDRs: []string{"fd00:9::f0/124"}}}
			if _, err := a.client.Create(context.Background(), res); err != nil {
				t.Fatal(err)
			}
			conf, err := cni.ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"net1","type":"tabby","ipam":{"type":"tabby-ipam"}}`))
			if err != nil {
				t.Fatal(err)
			}
			req := &cni.Request{Command: "ADD", ContainerID: "c1", NetNS: "/var/run/netns/fake-c1", IfName: "eth0", NetConf: conf,
				Args: "IgnoreUnknown=1;" + tc.args}
			out, err := a.Add(context.Background(), req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ADD %s: got %v, want an error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ADD %s: %v", tc.args, err)
			}
			var got []netip.Addr
			for _, ip := range out.IPs {
				a, _ := netip.AddrFromSlice(ip.Address.IP)
				got = append(got, a.Unmap())
			}
			slices.SortFunc(got, netip.Addr.Compare)
			if len(got) != 2 {
				t.Fatalf("ADD %s: got addresses %v, want two", tc.args, got)
			}
			for i, w := range tc.want {
				switch w {
				case "4", "6":
					if fam := map[bool]string{true: "4", false: "6"}[got[i].Is4()]; fam != w || slices.Contains(tc.want, got[i].String()) {
						t.Errorf("ADD %s: address %d is %s, want an automatic IPv%s address", tc.args, i, got[i], w)
					}
				default:
					if got[i].String() != w {
						t.Errorf("ADD %s: address %d is %s, want the static %s", tc.args, i, got[i], w)
					}
				}
			}
		})
	}
}
