package nodeip

import (
	"net/netip"
	"testing"
)

func TestChoose(t *testing.T) {
	cands := []Candidate{
		{Iface: "docker0", Prefix: netip.MustParsePrefix("172.17.0.1/16")},
		{Iface: "tby0123456789a", Prefix: netip.MustParsePrefix("10.9.0.1/32")},
		{Iface: "eth0", Prefix: netip.MustParsePrefix("10.0.0.5/24")},
		{Iface: "ens4", Prefix: netip.MustParsePrefix("192.168.7.2/24")},
	}
	tests := []struct {
		name   string
		method string
		want   string
	}{
		{"first-found skips docker and tabby", "first-found", "10.0.0.5/24"},
		{"empty is first-found", "", "10.0.0.5/24"},
		{"interface regex", "interface=ens.*", "192.168.7.2/24"},
		{"interface list", "interface=foo,ens4", "192.168.7.2/24"},
		{"skip-interface", "skip-interface=eth.*", "192.168.7.2/24"},
		{"cidr", "cidr=192.168.0.0/16", "192.168.7.2/24"},
		{"cidr list", "cidr=1.0.0.0/8,10.0.0.0/24", "10.0.0.5/24"},
		{"nothing matches", "interface=wlan.*", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.method)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := Choose(m, cands)
			if tc.want == "" {
				if ok {
					t.Fatalf("Choose = %s, want nothing", got)
				}
				return
			}
			if !ok || got.String() != tc.want {
				t.Fatalf("Choose = %s (%v), want %s", got, ok, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"interface=", "cidr=10.0.0.0/33", "bogus=1", "can-reach=", "interface=(("} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", s)
		}
	}
}
