package cni

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const mesosUUID = "5b8b6ab6-6f0a-4e56-9f5c-8d1d2a3c4e5f"

func mustConf(t *testing.T, s string) *NetConf {
	t.Helper()
	c, err := ParseConfig([]byte(s))
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", s, err)
	}
	return c
}

func TestIdentityFor(t *testing.T) {
	longValue := strings.Repeat("v", 80)
	tests := []struct {
		name string
		conf string
		args string // CNI_ARGS
		cid  string
		want Identity
	}{
		{
			name: "plain cni",
			conf: `{"name":"net1","type":"tabby"}`,
			cid:  "ctr1",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "ctr1", ContainerID: "ctr1",
				InterfaceName: "eth0", Network: "net1", IPAMHandle: "net1.ctr1.eth0"},
		},
		{
			name: "mesos",
			conf: `{"name":"dcos","type":"tabby","nodename":"agent-1","args":{"org.apache.mesos":{"network_info":{"name":"dcos",
				"labels":{"labels":[{"key":"app","value":"/dev/web"},{"key":"group","value":"development"},{"key":"HAPROXY_0_VHOST","value":"web.example.com"},{"key":"$$$","value":"dropped"}]},
				"port_mappings":[{"host_port":31000,"container_port":80,"protocol":"tcp"},{"host_port":31001,"container_port":53,"protocol":"UDP"},{"host_port":31000,"container_port":80}],
				"groups":["g1"],"ip_addresses":[{}]}}}}`,
			cid: mesosUUID,
			want: Identity{Orchestrator: "mesos", Namespace: "default", Workload: mesosUUID, ContainerID: mesosUUID,
				InterfaceName: "eth0", Network: "dcos", Node: "agent-1", IPAMHandle: "dcos." + mesosUUID + ".eth0",
				Labels: map[string]string{"app": "dev.web", "group": "development", "HAPROXY_0_VHOST": "web.example.com"},
				Groups: []string{"g1"},
				Ports:  []Port{{Protocol: "TCP", Port: 80, HostPort: 31000}, {Protocol: "UDP", Port: 53, HostPort: 31001}}},
		},
		{
			name: "named ports in args.cni.ports",
			conf: `{"name":"net1","type":"tabby","args":{"cni":{"ports":[{"name":"web","port":80},{"name":"dns","protocol":"udp","port":53}]}}}`,
			cid:  "ctr1",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "ctr1", ContainerID: "ctr1",
				InterfaceName: "eth0", Network: "net1", IPAMHandle: "net1.ctr1.eth0",
				Ports: []Port{{Name: "web", Protocol: "TCP", Port: 80}, {Name: "dns", Protocol: "UDP", Port: 53}}},
		},
		{
			name: "mesos namespace label and a long value",
			conf: `{"name":"dcos","type":"tabby","args":{"org.apache.mesos":{"network_info":{"labels":{"labels":[
				{"key":"projectcalico.org/namespace","value":"team-a"},{"key":"long","value":"` + longValue + `"}]}}}}}`,
			cid: mesosUUID,
			want: Identity{Orchestrator: "mesos", Namespace: "team-a", Workload: mesosUUID, ContainerID: mesosUUID,
				InterfaceName: "eth0", Network: "dcos", IPAMHandle: "dcos." + mesosUUID + ".eth0",
				Labels: map[string]string{"projectcalico.org.namespace": "team-a", "long": MesosLabelValue(longValue)}},
		},
		{
			name: "mesos without network_info",
			conf: `{"name":"dcos","type":"tabby","args":{"org.apache.mesos":{}}}`,
			cid:  mesosUUID,
			want: Identity{Orchestrator: "mesos", Namespace: "default", Workload: mesosUUID, ContainerID: mesosUUID,
				InterfaceName: "eth0", Network: "dcos", IPAMHandle: "dcos." + mesosUUID + ".eth0"},
		},
		{
			name: "kubernetes",
			conf: `{"name":"k8s-pod-network","type":"tabby"}`,
			args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc",
			cid:  "abc",
			want: Identity{Orchestrator: "k8s", Namespace: "prod", Workload: "web-0", Pod: "web-0", ContainerID: "abc",
				InfraContainerID: "abc", InterfaceName: "eth0", Network: "k8s-pod-network", IPAMHandle: "k8s-pod-network.abc.eth0"},
		},
		{
			name: "kubernetes needs both pod args; podman's name alone names the workload",
			conf: `{"name":"n","type":"tabby"}`,
			args: "IgnoreUnknown=1;K8S_POD_NAME=web-0",
			cid:  "abc",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "web-0", ContainerID: "abc",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.abc.eth0"},
		},
		{
			name: "a container name unfit for an endpoint name leaves the ID",
			conf: `{"name":"n","type":"tabby"}`,
			args: "K8S_POD_NAME=My_Web",
			cid:  "abc",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "abc", ContainerID: "abc",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.abc.eth0"},
		},
		{
			name: "mesos wins over k8s args",
			conf: `{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{}}}}`,
			args: "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0",
			cid:  "abc",
			want: Identity{Orchestrator: "mesos", Namespace: "default", Workload: "abc", ContainerID: "abc",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.abc.eth0"},
		},
		{
			name: "runtime port mappings and cni labels",
			conf: `{"name":"n","type":"tabby","args":{"cni":{"labels":[{"key":"app.kubernetes.io/name","value":"db"}]}},
				"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"},{"hostPort":5353,"containerPort":53,"protocol":"sctp"}]}}`,
			cid: "c",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "c", ContainerID: "c",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.c.eth0",
				Labels: map[string]string{"app.kubernetes.io.name": "db"},
				Ports:  []Port{{Protocol: "TCP", Port: 80, HostPort: 8080, HostIP: "127.0.0.1"}, {Protocol: "SCTP", Port: 53, HostPort: 5353}}},
		},
		{
			name: "runtime ips beat args and CNI_ARGS",
			conf: `{"name":"n","type":"tabby","runtimeConfig":{"ips":["10.0.0.1/24"]},"args":{"cni":{"ips":["10.0.0.2"]}},"ipam":{"ipAddrs":["10.0.0.4"]}}`,
			args: "IP=10.0.0.3",
			cid:  "c",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "c", ContainerID: "c",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.c.eth0", RequestedIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
		},
		{
			name: "args ips beat CNI_ARGS",
			conf: `{"name":"n","type":"tabby","args":{"cni":{"ips":["10.0.0.2"]}},"ipam":{"ipAddrs":["10.0.0.4"]}}`,
			args: "IP=10.0.0.3",
			cid:  "c",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "c", ContainerID: "c",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.c.eth0", RequestedIPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
		},
		{
			name: "CNI_ARGS IP beats ipam.ipAddrs",
			conf: `{"name":"n","type":"tabby","ipam":{"ipAddrs":["10.0.0.4"]}}`,
			args: "IP=10.0.0.3",
			cid:  "c",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "c", ContainerID: "c",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.c.eth0", RequestedIPs: []netip.Addr{netip.MustParseAddr("10.0.0.3")}},
		},
		{
			name: "ipam.ipAddrs",
			conf: `{"name":"n","type":"tabby","ipam":{"ipAddrs":["10.0.0.4","fd00::4"]}}`,
			cid:  "c",
			want: Identity{Orchestrator: "cni", Namespace: "default", Workload: "c", ContainerID: "c",
				InterfaceName: "eth0", Network: "n", IPAMHandle: "n.c.eth0",
				RequestedIPs: []netip.Addr{netip.MustParseAddr("10.0.0.4"), netip.MustParseAddr("fd00::4")}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &Request{ContainerID: tc.cid, IfName: "eth0", Args: tc.args, NetConf: mustConf(t, tc.conf)}
			got, err := IdentityFor(req)
			if err != nil {
				t.Fatalf("IdentityFor: %v", err)
			}
			if diff := cmp.Diff(&tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("IdentityFor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdentityForErrors(t *testing.T) {
	if _, err := IdentityFor(&Request{ContainerID: "c", IfName: "eth0"}); CodeOf(err, 0) != types.ErrInvalidNetworkConfig {
		t.Errorf("IdentityFor without NetConf: error %v; want code 7", err)
	}
	req := &Request{ContainerID: "c", IfName: "eth0", Args: "BROKEN", NetConf: mustConf(t, `{"name":"n","type":"tabby"}`)}
	if _, err := IdentityFor(req); CodeOf(err, 0) != types.ErrInvalidEnvironmentVariables {
		t.Errorf("IdentityFor with a bad CNI_ARGS: error %v; want code 4", err)
	}
}

func TestHandleID(t *testing.T) {
	if got, want := HandleID("dcos", mesosUUID, "eth1"), "dcos."+mesosUUID+".eth1"; got != want {
		t.Errorf("HandleID = %q; want %q", got, want)
	}
}
