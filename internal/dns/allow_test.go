package dns

import (
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
)

func TestClientFilter(t *testing.T) {
	pools := []*api.IPPool{
		{ObjectMeta: api.ObjectMeta{Name: "v4"}, Spec: api.IPPoolSpec{CIDR: "10.244.0.0/16"}},
		{ObjectMeta: api.ObjectMeta{Name: "v6"}, Spec: api.IPPoolSpec{CIDR: "fd00:244::/64"}},
		{ObjectMeta: api.ObjectMeta{Name: "bad"}, Spec: api.IPPoolSpec{CIDR: "nonsense"}},
	}
	nodes := []*api.Node{
		testNode("n1", "10.0.1.11"), // 10.0.1.0/24
		{ObjectMeta: api.ObjectMeta{Name: "n2"}, Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: "192.0.2.7", IPv6Address: "2001:db8::7/64"}}},
		{ObjectMeta: api.ObjectMeta{Name: "n3"}}, // no BGP spec
	}
	static := []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}
	f := newClientFilter(false, static, pools, nodes)
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true}, {"127.9.9.9", true}, {"::1", true},
		{"10.244.3.4", true}, {"fd00:244::9", true}, // pools
		{"10.0.1.200", true}, {"10.0.2.1", false}, // n1's /24
		{"192.0.2.7", true}, {"192.0.2.8", false}, // n2 without a length: that address only
		{"2001:db8::1234", true},
		{"172.20.0.1", true}, // ForwardAllow
		{"::ffff:10.244.0.1", true},
		{"8.8.8.8", false}, {"203.0.113.1", false},
	} {
		if got := f.allows(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("allows(%s) = %v; want %v", tc.addr, got, tc.want)
		}
	}
	if !newClientFilter(true, nil, nil, nil).allows(netip.MustParseAddr("203.0.113.1")) {
		t.Errorf("ForwardAllowAny does not allow everyone")
	}
	if (*clientFilter)(nil).allows(netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("a nil filter allows")
	}
}
