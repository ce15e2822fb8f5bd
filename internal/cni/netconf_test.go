package cni

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func boolp(v bool) *Bool { return &Bool{Value: v} }

func TestParseConfigEveryKey(t *testing.T) {
	in := `{
		"cniVersion": "1.1.0",
		"name": "net1",
		"type": "tabby",
		"agent_socket": "/run/tabby/other.sock",
		"timeout_seconds": 90,
		"mtu": 1450,
		"nodename": "node-1.example",
		"log_level": "DEBUG",
		"ipam": {
			"type": "tabby-ipam",
			"assign_ipv4": "true",
			"assign_ipv6": true,
			"ipv4_pools": ["10.65.0.0/16", "default-ipv4-ippool"],
			"ipv6_pools": ["fd65::/48"],
			"ipAddrs": ["10.65.1.1", "fd65::1"]
		},
		"dns": {"nameservers": ["10.0.0.2"], "domain": "example.org", "search": ["a.example.org"], "options": ["ndots:2"]},
		"args": {
			"org.apache.mesos": {
				"network_info": {
					"name": "net1",
					"labels": {"labels": [{"key": "app", "value": "web"}, {"key": "flag"}]},
					"port_mappings": [{"host_port": 31000, "container_port": 80, "protocol": "tcp"}, {"host_port": 31001, "container_port": 53}],
					"groups": ["dev"],
					"ip_addresses": [{}, {"protocol": "IPv4", "ip_address": "10.65.0.9"}]
				}
			},
			"cni": {"ips": ["10.65.0.7/24"], "labels": [{"key": "tier", "value": "front"}]},
			"other": {"anything": [1, 2]}
		},
		"runtimeConfig": {
			"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"}],
			"ips": ["10.65.0.8"],
			"mac": "0a:58:0a:41:00:08",
			"bandwidth": {"ingressRate": 1}
		},
		"capabilities": {"portMappings": true, "ips": true},
		"prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "10.65.0.8/32"}]},
		"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
		"cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}],
		"unknown_key": {"nested": true}
	}`
	got, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := &NetConf{
		CNIVersion:     "1.1.0",
		Name:           "net1",
		Type:           "tabby",
		AgentSocket:    "/run/tabby/other.sock",
		TimeoutSeconds: 90,
		MTU:            1450,
		Nodename:       "node-1.example",
		LogLevel:       "DEBUG",
		IPAM: IPAMConf{
			Type:       "tabby-ipam",
			AssignIPv4: boolp(true),
			AssignIPv6: boolp(true),
			IPv4Pools:  []string{"10.65.0.0/16", "default-ipv4-ippool"},
			IPv6Pools:  []string{"fd65::/48"},
			IPAddrs:    []string{"10.65.1.1", "fd65::1"},
		},
		DNS: types.DNS{Nameservers: []string{"10.0.0.2"}, Domain: "example.org", Search: []string{"a.example.org"}, Options: []string{"ndots:2"}},
		Args: Args{
			Mesos: &MesosArgs{NetworkInfo: &MesosNetworkInfo{
				Name:   "net1",
				Labels: MesosLabels{Labels: []Label{{Key: "app", Value: "web"}, {Key: "flag"}}},
				PortMappings: []MesosPortMapping{
					{HostPort: 31000, ContainerPort: 80, Protocol: "tcp"},
					{HostPort: 31001, ContainerPort: 53},
				},
				Groups:      []string{"dev"},
				IPAddresses: []MesosIPAddress{{}, {Protocol: "IPv4", IPAddress: "10.65.0.9"}},
			}},
			CNI: &CNIArgsIn{IPs: []string{"10.65.0.7/24"}, Labels: []Label{{Key: "tier", Value: "front"}}},
		},
		RuntimeConfig: RuntimeConfig{
			PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "udp", HostIP: "127.0.0.1"}},
			IPs:          []string{"10.65.0.8"},
			MAC:          "0a:58:0a:41:00:08",
		},
		Capabilities:      map[string]bool{"portMappings": true, "ips": true},
		PrevResult:        json.RawMessage(`{"cniVersion": "1.1.0", "ips": [{"address": "10.65.0.8/32"}]}`),
		ValidAttachments:  []Attachment{{ContainerID: "c1", IfName: "eth0"}},
		LegacyAttachments: []Attachment{{ContainerID: "c1", IfName: "eth0"}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Bool{})); diff != "" {
		t.Errorf("ParseConfig (-want +got):\n%s", diff)
	}
	if !got.IPAM.WantIPv4() || !got.IPAM.WantIPv6() {
		t.Errorf("WantIPv4, WantIPv6 = %v, %v; want true, true", got.IPAM.WantIPv4(), got.IPAM.WantIPv6())
	}
	if got.Socket() != "/run/tabby/other.sock" || got.Timeout(CmdAdd) != 90*time.Second || got.Timeout(CmdStatus) != DefaultStatusTimeout {
		t.Errorf("Socket, Timeout(ADD), Timeout(STATUS) = %q, %v, %v", got.Socket(), got.Timeout(CmdAdd), got.Timeout(CmdStatus))
	}
	prev, err := got.ParsePrevResult()
	if err != nil || prev == nil || len(prev.IPs) != 1 || prev.IPs[0].Address.String() != "10.65.0.8/32" {
		t.Errorf("ParsePrevResult = %+v, %v; want one address 10.65.0.8/32", prev, err)
	}
}

// TestParseConfigCalico checks that Calico's configs (DC/OS's delegate,
// the Universe framework's calico.cni, a Kubernetes one) parse once their
// type is changed, their Calico-only keys ignored.
func TestParseConfigCalico(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want func(*NetConf) bool
	}{
		{
			name: "universe calico.cni",
			in:   `{"name": "calico", "type": "tabby", "etcd_endpoints": "http://localhost:2379", "ipam": {"type": "tabby-ipam"}}`,
			want: func(c *NetConf) bool { return c.CNIVersion == "" && c.IPAM.WantIPv4() && !c.IPAM.WantIPv6() },
		},
		{
			name: "dcos delegate",
			in: `{"cniVersion": "0.1.0", "name": "calico", "type": "tabby", "mtu": 1500,
				"etcd_endpoints": "http://master.dcos.thisdcos.directory:2379", "ipam": {"type": "tabby-ipam"}}`,
			want: func(c *NetConf) bool { return c.CNIVersion == "0.1.0" && c.MTU == 1500 },
		},
		{
			name: "calico keys of every kind",
			in: `{"cniVersion": "0.3.1", "name": "k8s-pod-network", "type": "tabby", "log_level": "info",
				"log_file_path": "/var/log/calico/cni/cni.log", "datastore_type": "kubernetes", "nodename": "node1",
				"nodename_file_optional": true, "etcd_endpoints": "a,b", "etcd_key_file": "", "etcd_ca_cert_file": "",
				"policy": {"type": "k8s"}, "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
				"feature_control": {"floating_ips": false}, "container_settings": {"allow_ip_forwarding": false},
				"num_queues": 1, "device_type": "veth", "readiness_gates": [], "include_default_routes": true,
				"ipam": {"type": "tabby-ipam", "assign_ipv4": "true", "assign_ipv6": "false", "ipv4_pools": ["default-ipv4-ippool"]}}`,
			want: func(c *NetConf) bool { return c.Nodename == "node1" && !c.IPAM.WantIPv6() },
		},
		{
			name: "bridge with tabby-ipam",
			in:   `{"cniVersion": "1.0.0", "name": "br", "type": "bridge", "bridge": "cni0", "isGateway": true, "ipam": {"type": "tabby-ipam", "ipv4_pools": ["10.66.0.0/16"]}}`,
			want: func(c *NetConf) bool { return c.Type == "bridge" && c.IPAM.Type == TypeIPAM },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.in))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if !tc.want(c) {
				t.Errorf("ParseConfig = %+v; not what the case wants", c)
			}
		})
	}
}

func TestBoolForms(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    bool
		wantErr bool
	}{
		{name: "string true", value: `"true"`, want: true},
		{name: "string false", value: `"false"`, want: false},
		{name: "string TRUE", value: `"TRUE"`, want: true},
		{name: "json true", value: `true`, want: true},
		{name: "json false", value: `false`, want: false},
		{name: "yes", value: `"yes"`, wantErr: true},
		{name: "number", value: `1`, wantErr: true},
		{name: "empty string", value: `""`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(`{"name":"n","type":"tabby","ipam":{"assign_ipv6":` + tc.value + `}}`))
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), `"ipam.assign_ipv6"`) || !strings.Contains(err.Error(), tc.value) {
					t.Fatalf("ParseConfig error = %v; want one naming ipam.assign_ipv6 and %s", err, tc.value)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if got := c.IPAM.WantIPv6(); got != tc.want {
				t.Errorf("WantIPv6() = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code uint
		want []string // substrings of the message: the field and the value
	}{
		{name: "empty", in: ``, code: types.ErrDecodingFailure, want: []string{"empty"}},
		{name: "not json", in: `{"name":`, code: types.ErrDecodingFailure, want: []string{"not valid JSON"}},
		{name: "array", in: `[1]`, code: types.ErrDecodingFailure, want: []string{"JSON object", "array"}},
		{name: "string", in: `"x"`, code: types.ErrDecodingFailure, want: []string{"JSON object", "string"}},
		{name: "unsupported version", in: `{"cniVersion":"2.0.0","name":"n","type":"tabby"}`, code: types.ErrIncompatibleCNIVersion, want: []string{`"cniVersion"`, `"2.0.0"`}},
		{name: "no name", in: `{"type":"tabby"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"name"`, "missing"}},
		{name: "bad name", in: `{"name":"-net","type":"tabby"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"name"`, `"-net"`}},
		{name: "name with slash", in: `{"name":"a/b","type":"tabby"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"name"`, `"a/b"`}},
		{name: "no type", in: `{"name":"n"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"type"`, "missing"}},
		{name: "type path", in: `{"name":"n","type":"../tabby"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"type"`, `"../tabby"`}},
		{name: "name not string", in: `{"name":5,"type":"tabby"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"name"`, "5", "a number", "want a string"}},
		{name: "relative socket", in: `{"name":"n","type":"tabby","agent_socket":"agent.sock"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"agent_socket"`, `"agent.sock"`}},
		{name: "relative ipam socket", in: `{"name":"n","type":"bridge","ipam":{"type":"tabby-ipam","agent_socket":"x.sock"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.agent_socket"`, `"x.sock"`}},
		{name: "long socket", in: `{"name":"n","type":"tabby","agent_socket":"/` + strings.Repeat("a", 120) + `"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"agent_socket"`, "107"}},
		{name: "negative timeout", in: `{"name":"n","type":"tabby","timeout_seconds":-1}`, code: types.ErrInvalidNetworkConfig, want: []string{`"timeout_seconds"`, "-1"}},
		{name: "huge timeout", in: `{"name":"n","type":"tabby","timeout_seconds":86400}`, code: types.ErrInvalidNetworkConfig, want: []string{`"timeout_seconds"`, "86400"}},
		{name: "mtu too big", in: `{"name":"n","type":"tabby","mtu":70000}`, code: types.ErrInvalidNetworkConfig, want: []string{`"mtu"`, "70000"}},
		{name: "mtu too small", in: `{"name":"n","type":"tabby","mtu":20}`, code: types.ErrInvalidNetworkConfig, want: []string{`"mtu"`, "20"}},
		{name: "mtu string", in: `{"name":"n","type":"tabby","mtu":"1500"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"mtu"`, `"1500"`, "a string", "integer"}},
		{name: "mtu fraction", in: `{"name":"n","type":"tabby","mtu":1500.5}`, code: types.ErrInvalidNetworkConfig, want: []string{`"mtu"`, "1500.5"}},
		{name: "nodename", in: `{"name":"n","type":"tabby","nodename":"a b"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"nodename"`, `"a b"`}},
		{name: "log level", in: `{"name":"n","type":"tabby","log_level":"loud"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"log_level"`, `"loud"`}},
		{name: "ipam type path", in: `{"name":"n","type":"tabby","ipam":{"type":"/bin/x"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.type"`, `"/bin/x"`}},
		{name: "assign_ipv4 bad", in: `{"name":"n","type":"tabby","ipam":{"assign_ipv4":"maybe"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.assign_ipv4"`, `"maybe"`}},
		{name: "nothing to assign", in: `{"name":"n","type":"tabby","ipam":{"assign_ipv4":"false","assign_ipv6":"false"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.assign_ipv4"`, "assign_ipv6"}},
		{name: "v6 pool in v4", in: `{"name":"n","type":"tabby","ipam":{"ipv4_pools":["fd00::/64"]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.ipv4_pools[0]"`, `"fd00::/64"`}},
		{name: "v4 pool in v6", in: `{"name":"n","type":"tabby","ipam":{"ipv6_pools":["p","10.0.0.0/8"]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.ipv6_pools[1]"`, `"10.0.0.0/8"`}},
		{name: "bad cidr pool", in: `{"name":"n","type":"tabby","ipam":{"ipv4_pools":["10.0.0.0/99"]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.ipv4_pools[0]"`, `"10.0.0.0/99"`}},
		{name: "bad named port", in: `{"name":"n","type":"tabby","args":{"cni":{"ports":[{"name":"1web","port":80}]}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"args.cni.ports[0].name"`, `"1web"`}},
		{name: "named port out of range", in: `{"name":"n","type":"tabby","args":{"cni":{"ports":[{"name":"web","port":0}]}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"args.cni.ports[0].port"`, "0"}},
		{name: "named port protocol", in: `{"name":"n","type":"tabby","args":{"cni":{"ports":[{"name":"web","port":80,"protocol":"icmp"}]}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"args.cni.ports[0].protocol"`, `"icmp"`}},
		{name: "empty pool", in: `{"name":"n","type":"tabby","ipam":{"ipv4_pools":[""]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.ipv4_pools[0]"`, `""`}},
		{name: "pools not list", in: `{"name":"n","type":"tabby","ipam":{"ipv4_pools":"10.0.0.0/8"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.ipv4_pools"`, `"10.0.0.0/8"`, "an array"}},
		{name: "ipAddrs", in: `{"name":"n","type":"tabby","ipam":{"ipAddrs":["10.0.0.300"]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"ipam.ipAddrs[0]"`, `"10.0.0.300"`}},
		{name: "nameserver", in: `{"name":"n","type":"tabby","dns":{"nameservers":["dns.example"]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"dns.nameservers[0]"`, `"dns.example"`}},
		{name: "dns domain", in: `{"name":"n","type":"tabby","dns":{"domain":"a b"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"dns.domain"`, `"a b"`}},
		{name: "dns search", in: `{"name":"n","type":"tabby","dns":{"search":[""]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"dns.search[0]"`}},
		{name: "mesos container port", in: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":1,"container_port":0}]}}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`port_mappings[0].container_port`, ": 0 "}},
		{name: "mesos host port", in: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":70000,"container_port":80}]}}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`port_mappings[0].host_port`, "70000"}},
		{name: "mesos negative port", in: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":-1,"container_port":80}]}}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`org.apache.mesos.network_info.port_mappings.host_port`, "-1", "non-negative"}},
		{name: "mesos protocol", in: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":1,"container_port":80,"protocol":"icmp"}]}}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`port_mappings[0].protocol`, `"icmp"`}},
		{name: "mesos labels not wrapped", in: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"labels":[{"key":"a"}]}}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`org.apache.mesos.network_info.labels`, "an array", "want an object"}},
		{name: "mesos ip protocol", in: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"ip_addresses":[{"protocol":"IPv5"}]}}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`ip_addresses[0].protocol`, `"IPv5"`}},
		{name: "mesos ip address", in: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"ip_addresses":[{"ip_address":"x"}]}}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`ip_addresses[0].ip_address`, `"x"`}},
		{name: "args cni ips", in: `{"name":"n","type":"tabby","args":{"cni":{"ips":["nope"]}}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"args.cni.ips[0]"`, `"nope"`}},
		{name: "portmap host port", in: `{"name":"n","type":"tabby","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"runtimeConfig.portMappings[0].hostPort"`, ": 0 "}},
		{name: "portmap container port", in: `{"name":"n","type":"tabby","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":65536}]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"runtimeConfig.portMappings[0].containerPort"`, "65536"}},
		{name: "portmap protocol", in: `{"name":"n","type":"tabby","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"gre"}]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"runtimeConfig.portMappings[0].protocol"`, `"gre"`}},
		{name: "portmap host ip", in: `{"name":"n","type":"tabby","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"localhost"}]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"runtimeConfig.portMappings[0].hostIP"`, `"localhost"`}},
		{name: "runtime ips", in: `{"name":"n","type":"tabby","runtimeConfig":{"ips":["10.0.0.1/33"]}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"runtimeConfig.ips[0]"`, `"10.0.0.1/33"`}},
		{name: "runtime mac", in: `{"name":"n","type":"tabby","runtimeConfig":{"mac":"zz"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"runtimeConfig.mac"`, `"zz"`}},
		{name: "capabilities", in: `{"name":"n","type":"tabby","capabilities":{"ips":"yes"}}`, code: types.ErrInvalidNetworkConfig, want: []string{`"capabilities.ips"`, `"yes"`}},
		{name: "gc attachment", in: `{"name":"n","type":"tabby","cni.dev/valid-attachments":[{"containerID":"","ifname":"eth0"}]}`, code: types.ErrInvalidNetworkConfig, want: []string{`"cni.dev/valid-attachments[0].containerID"`}},
		{name: "long value shortened", in: `{"name":"n","type":"tabby","mtu":"` + strings.Repeat("9", 200) + `"}`, code: types.ErrInvalidNetworkConfig, want: []string{`"mtu"`, `"999`, `... is a string`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParseConfig(%s) succeeded; want an error", tc.in)
			}
			if got := CodeOf(err, 0); got != tc.code {
				t.Errorf("code = %d; want %d (error %v)", got, tc.code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{"name":"n","type":"tabby"}`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	got := []any{c.Socket(), c.Timeout(CmdAdd), c.Timeout(CmdDel), c.Timeout(CmdStatus), c.IPAM.WantIPv4(), c.IPAM.WantIPv6(), c.Attachments() == nil}
	want := []any{DefaultAgentSocket, DefaultTimeout, DefaultTimeout, DefaultStatusTimeout, true, false, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	ipamSocket, err := ParseConfig([]byte(`{"name":"n","type":"bridge","ipam":{"type":"tabby-ipam","agent_socket":"/run/x.sock"}}`))
	if err != nil || ipamSocket.Socket() != "/run/x.sock" {
		t.Errorf("Socket() with ipam.agent_socket = %q, %v; want /run/x.sock", ipamSocket.Socket(), err)
	}
	legacy, err := ParseConfig([]byte(`{"name":"n","type":"tabby","cni.dev/attachments":[]}`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if a := legacy.Attachments(); a == nil || len(a) != 0 {
		t.Errorf("Attachments() = %#v; want an empty, non-nil list from cni.dev/attachments", a)
	}
}

// TestNetConfWireRoundTrip checks that the parsed config survives the
// JSON the plugin sends to the agent.
func TestNetConfWireRoundTrip(t *testing.T) {
	in := `{"cniVersion":"0.4.0","name":"n","type":"tabby","ipam":{"assign_ipv4":"false","assign_ipv6":"true"},
		"args":{"org.apache.mesos":{"network_info":{"labels":{"labels":[{"key":"a","value":"b"}]}}}},
		"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080}]}}`
	c, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	back, err := ParseConfig(out)
	if err != nil {
		t.Fatalf("ParseConfig(Marshal(c)) of %s: %v", out, err)
	}
	if diff := cmp.Diff(c, back, cmpopts.EquateEmpty(), cmp.AllowUnexported(Bool{})); diff != "" {
		t.Errorf("round trip (-before +after):\n%s", diff)
	}
}
