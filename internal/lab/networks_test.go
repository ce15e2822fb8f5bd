package lab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseNetworkSpec(t *testing.T) {
	got, err := ParseNetworkSpec("blue,pool=10.245.0.0/16,label=team=blue,label=env=")
	if err != nil {
		t.Fatal(err)
	}
	want := NetworkSpec{Name: "blue", Pool: netip.MustParsePrefix("10.245.0.0/16"), Labels: map[string]string{"team": "blue", "env": ""}}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if got.PoolName() != "blue-pool" {
		t.Errorf("PoolName() = %q; want blue-pool", got.PoolName())
	}
	bad := []struct{ in, want string }{
		{"Blue", `network name "Blue"`},
		{"tabby", `network name "tabby": the lab's default network`},
		{"blue,pool=10.245.0.0/33", `pool "10.245.0.0/33": not a CIDR`},
		{"blue,pool=10.101.0.0/16", "overlaps the lab fabric"},
		{"blue,label=team", `label "team": want key=value`},
		{"blue,label=bad key=x", "keys may not hold blanks"},
		{"blue,label=team=a b", `"a b" is not a valid label value`},
		{"blue,colour=red", `"colour=red": want pool=CIDR or label=KEY=VALUE`},
	}
	for _, tc := range bad {
		if _, err := ParseNetworkSpec(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseNetworkSpec(%q) error = %v; want one containing %q", tc.in, err, tc.want)
		}
	}
}

func TestConfigNetworks(t *testing.T) {
	c := Config{Name: "x", Networks: []NetworkSpec{
		{Name: "blue", Pool: netip.MustParsePrefix("10.244.128.0/17")},
		{Name: "green"}, {Name: "green"},
	}}.WithDefaults()
	err := c.Validate()
	for _, want := range []string{"network blue: pool 10.244.128.0/17 overlaps the default pool 10.244.0.0/16", "network green: given twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to contain %q", err, want)
		}
	}
}

func TestParseNamedPort(t *testing.T) {
	for in, want := range map[string]NamedPort{
		"http=80/tcp": {Name: "http", Protocol: "TCP", Port: 80},
		"dns=53/udp":  {Name: "dns", Protocol: "UDP", Port: 53},
		"web=8080":    {Name: "web", Protocol: "TCP", Port: 8080},
	} {
		got, err := ParseNamedPort(in)
		if err != nil || got != want {
			t.Errorf("ParseNamedPort(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := []struct{ in, want string }{
		{"http", "want NAME=PORT/PROTO"},
		{"http=0/tcp", `"0" is not a port`},
		{"http=70000", `"70000" is not a port`},
		{"1http=80", `name "1http"`},
		{"http=80/icmp", `protocol "ICMP": want tcp, udp or sctp`},
	}
	for _, tc := range bad {
		if _, err := ParseNamedPort(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseNamedPort(%q) error = %v; want one containing %q", tc.in, err, tc.want)
		}
	}
	spec := RunSpec{Name: "c", Node: "h1", MesosApp: "/a/b", Command: []string{"sleep"}, NamedPorts: []NamedPort{{Name: "web", Protocol: "TCP", Port: 80}}}
	if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "a Mesos attach carries no port names") {
		t.Errorf("Validate() of a Mesos app with named ports = %v; want a refusal", err)
	}
}
