package lab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"simple", "demo", ""},
		{"digits", "lab42", ""},
		{"eight", "abcdefgh", ""},
		{"empty", "", "required"},
		{"nine", "abcdefghi", "longer than 8"},
		{"upper", "Demo", "lower-case"},
		{"leading digit", "1lab", "starting with a letter"},
		{"dash", "a-b", "lower-case"},
		{"slash", "a/b", "lower-case"},
		{"unicode", "läb", "lower-case"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, ValidateName(tc.in), tc.wantErr)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("error: got %v, want none", err)
	case want != "" && err == nil:
		t.Fatalf("error: got none, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error: got %q, want one containing %q", err, want)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func(f func(*Config)) Config {
		c := Config{Name: "demo", BinDir: "/bin"}
		f(&c)
		return c.WithDefaults()
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", base(func(*Config) {}), ""},
		{"twenty hosts four racks", base(func(c *Config) { c.Nodes, c.Racks = 20, 4 }), ""},
		{"negative nodes", base(func(c *Config) { c.Nodes = -1 }), "nodes -1"},
		{"too many nodes", base(func(c *Config) { c.Nodes = 1001 }), "nodes 1001"},
		{"more racks than nodes", base(func(c *Config) { c.Nodes, c.Racks = 2, 3 }), "racks 3: more racks than nodes"},
		{"too many racks", base(func(c *Config) { c.Nodes, c.Racks = 20, 17 }), "racks 17"},
		{"rack too full", base(func(c *Config) { c.Nodes = 241 }), "at most 240 hosts per rack"},
		{"pool on fabric", base(func(c *Config) { c.Pool = netip.MustParsePrefix("10.100.0.0/14") }), "overlaps the lab fabric (rack 1)"},
		{"pool on rack 2", base(func(c *Config) { c.Nodes, c.Racks, c.Pool = 2, 2, netip.MustParsePrefix("10.102.7.0/24") }), "rack 2"},
		{"pool next to fabric", base(func(c *Config) { c.Pool = netip.MustParsePrefix("10.102.0.0/16") }), ""},
		{"pool link-local", base(func(c *Config) { c.Pool = netip.MustParsePrefix("169.254.0.0/16") }), "link-local"},
		{"pool loopback", base(func(c *Config) { c.Pool = netip.MustParsePrefix("127.0.0.0/16") }), "loopback"},
		{"pool v6", base(func(c *Config) { c.Pool = netip.MustParsePrefix("fd00::/64") }), "IPv4"},
		{"pool host bits", base(func(c *Config) { c.Pool = netip.MustParsePrefix("10.244.1.0/16") }), "host bits"},
		{"pool too small", base(func(c *Config) { c.Pool = netip.MustParsePrefix("10.244.1.0/28") }), "8 to 26"},
		{"bad encap", base(func(c *Config) { c.Encap = "gre" }), `encap "gre"`},
		{"no bin dir", Config{Name: "demo"}.WithDefaults(), "binDir"},
		{"bad name", base(func(c *Config) { c.Name = "Demo" }), `lab name "Demo"`},
		{"dual", base(func(c *Config) { c.IPFamily = Dual }), ""},
		{"ipv6", base(func(c *Config) { c.IPFamily = IPv6 }), ""},
		{"bad family", base(func(c *Config) { c.IPFamily = "ipv5" }), `ip-family "ipv5": want ipv4, ipv6 or dual`},
		{"pool6 not ula", base(func(c *Config) { c.IPFamily, c.Pool6 = Dual, netip.MustParsePrefix("2001:db8::/64") }), "unique local"},
		{"pool6 on fabric", base(func(c *Config) { c.IPFamily, c.Pool6 = Dual, netip.MustParsePrefix("fd00:10:101::/48") }), "overlaps the lab fabric"},
		{"pool6 v4", base(func(c *Config) { c.IPFamily, c.Pool6 = Dual, netip.MustParsePrefix("10.9.0.0/16") }), "pool6 10.9.0.0/16: must be an IPv6 CIDR"},
		{"pool6 too small", base(func(c *Config) { c.IPFamily, c.Pool6 = Dual, netip.MustParsePrefix("fd00:244::/124") }), "48 to 122"},
		{"pool6 unused in ipv4", base(func(c *Config) { c.Pool6 = netip.MustParsePrefix("2001:db8::/64") }), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, tc.cfg.Validate(), tc.wantErr)
		})
	}
}

func TestEncapModes(t *testing.T) {
	tests := []struct {
		encap       string
		ipip, vxlan string
	}{
		{"none", "Never", "Never"},
		{"ipip", "Always", "Never"},
		{"ipip-crosssubnet", "CrossSubnet", "Never"},
		{"vxlan", "Never", "Always"},
		{"vxlan-crosssubnet", "Never", "CrossSubnet"},
	}
	for _, tc := range tests {
		t.Run(tc.encap, func(t *testing.T) {
			ipip, vxlan, err := EncapModes(tc.encap)
			if err != nil {
				t.Fatal(err)
			}
			if ipip != tc.ipip || vxlan != tc.vxlan {
				t.Errorf("modes: got %s/%s, want %s/%s", ipip, vxlan, tc.ipip, tc.vxlan)
			}
		})
	}
}

func TestMakePlan(t *testing.T) {
	cfg := Config{Name: "ab", Nodes: 5, Racks: 2, BinDir: "/b"}.WithDefaults()
	p, err := MakePlan(cfg, 3, "m1")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Name, NS, IP, GW, Link, ID string }
	var got []row
	for _, n := range p.AgentNodes() {
		got = append(got, row{n.Name, n.Namespace, n.IP.String(), n.Gateway.String(), n.FabricLink, n.ID})
	}
	want := []row{
		{"master", "tlab-ab-master", "10.101.3.2/24", "10.101.3.1", "ab-m", "m1"},
		{"h1", "tlab-ab-h1", "10.101.3.11/24", "10.101.3.1", "ab-h1", "m1-S0"},
		{"h2", "tlab-ab-h2", "10.102.3.11/24", "10.102.3.1", "ab-h2", "m1-S1"},
		{"h3", "tlab-ab-h3", "10.101.3.12/24", "10.101.3.1", "ab-h3", "m1-S2"},
		{"h4", "tlab-ab-h4", "10.102.3.12/24", "10.102.3.1", "ab-h4", "m1-S3"},
		{"h5", "tlab-ab-h5", "10.101.3.13/24", "10.101.3.1", "ab-h5", "m1-S4"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	if p.Router == nil || len(p.Router.Legs) != 2 || p.Router.Legs[1].IP.String() != "10.102.3.1/24" || p.Router.Legs[1].Link != "ab-r2" {
		t.Errorf("router: got %+v, want legs 10.101.3.1/24 and 10.102.3.1/24", p.Router)
	}
	if d := cmp.Diff([]string{"tlab-ab-fabric", "tlab-ab-router", "tlab-ab-master", "tlab-ab-h1", "tlab-ab-h2", "tlab-ab-h3", "tlab-ab-h4", "tlab-ab-h5"}, p.Namespaces()); d != "" {
		t.Errorf("namespaces (-want +got):\n%s", d)
	}
	if got, want := p.DatastoreURL(), "http://10.101.3.2:2379"; got != want {
		t.Errorf("datastore: got %s, want %s", got, want)
	}
	for _, key := range []string{"h4", "m1-S3", "10.102.3.12"} {
		if n, ok := p.Host(key); !ok || n.Name != "h4" {
			t.Errorf("Host(%q): got %v %v, want h4", key, n.Name, ok)
		}
	}
	if _, ok := p.Host("master"); ok {
		t.Errorf("Host(master): got a host, want none (the master is not an agent host)")
	}
	one, _ := MakePlan(Config{Name: "ab", Nodes: 1, Racks: 1}.WithDefaults(), 1, "m")
	if one.Router != nil {
		t.Errorf("one rack: got a router, want none")
	}
}

func TestMakePlanDual(t *testing.T) {
	cfg := Config{Name: "ab", Nodes: 3, Racks: 2, BinDir: "/b", IPFamily: Dual}.WithDefaults()
	p, err := MakePlan(cfg, 3, "m1")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Name, IP, GW, IP6, GW6 string }
	var got []row
	for _, n := range p.AgentNodes() {
		got = append(got, row{n.Name, n.IP.String(), n.Gateway.String(), n.IP6.String(), n.Gateway6.String()})
	}
	want := []row{
		{"master", "10.101.3.2/24", "10.101.3.1", "fd00:10:101:3::2/64", "fd00:10:101:3::1"},
		{"h1", "10.101.3.11/24", "10.101.3.1", "fd00:10:101:3::11/64", "fd00:10:101:3::1"},
		{"h2", "10.102.3.11/24", "10.102.3.1", "fd00:10:102:3::11/64", "fd00:10:102:3::1"},
		{"h3", "10.101.3.12/24", "10.101.3.1", "fd00:10:101:3::12/64", "fd00:10:101:3::1"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	if got, want := p.Router.Legs[1].IP6.String(), "fd00:10:102:3::1/64"; got != want {
		t.Errorf("router leg 2 IPv6: got %s, want %s", got, want)
	}
	if got, want := p.DatastoreURL6(), "http://[fd00:10:101:3::2]:2379"; got != want {
		t.Errorf("datastore over IPv6: got %s, want %s", got, want)
	}
	if n, ok := p.Host("fd00:10:102:3::11"); !ok || n.Name != "h2" {
		t.Errorf("Host by IPv6 address: got %v %v, want h2", n.Name, ok)
	}
	for _, a := range []netip.Addr{p.Master.IP6.Addr(), p.Router.Legs[0].IP6.Addr()} {
		if !ula.Contains(a) {
			t.Errorf("fabric address %s: not a unique local address", a)
		}
	}
	v4, _ := MakePlan(Config{Name: "ab", Nodes: 1}.WithDefaults(), 1, "m")
	if v4.Master.IP6.IsValid() || v4.Racks[0].Subnet6.IsValid() || v4.DatastoreURL6() != "" {
		t.Errorf("ipv4 lab: got IPv6 fabric %v %v, want none", v4.Master.IP6, v4.Racks[0].Subnet6)
	}
}

// Link names must fit IFNAMSIZ-1 = 15 characters for the largest lab.
func TestMakePlanLinkNamesFit(t *testing.T) {
	cfg := Config{Name: "abcdefgh", Nodes: MaxNodes, Racks: MaxRacks, BinDir: "/b"}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(cfg, 250, "m")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range p.Racks {
		names = append(names, r.Bridge)
	}
	for _, l := range p.Router.Legs {
		names = append(names, l.Link, l.FabricLink)
	}
	for _, n := range p.AgentNodes() {
		names = append(names, n.FabricLink, n.Uplink)
	}
	for _, n := range names {
		if len(n) > 15 {
			t.Errorf("link name %q: %d characters, want at most 15", n, len(n))
		}
		if !strings.HasPrefix(n, "abcdefgh-") {
			t.Errorf("link name %q: does not carry the lab's name", n)
		}
	}
}
