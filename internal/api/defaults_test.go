package api

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSetDefaults(t *testing.T) {
	tcp, udp, six := ProtocolTCP, ProtocolUDP, Protocol("6")
	lower, zeroSix := Protocol("tcp"), Protocol("06")
	allow := Rule{Action: ActionAllow}
	tests := []struct {
		name string
		in   Resource
		want Resource
	}{
		{"v4 pool", &IPPool{Spec: IPPoolSpec{CIDR: "10.0.0.0/16"}},
			&IPPool{TypeMeta: TypeMeta{APIVersion, "IPPool"}, Spec: IPPoolSpec{CIDR: "10.0.0.0/16", BlockSize: 26, IPIPMode: "Never", VXLANMode: "Never", NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}}}},
		{"v6 pool, spelling normalized", &IPPool{Spec: IPPoolSpec{CIDR: "FD00:0:0::/48", VXLANMode: "Always", AllowedUses: []string{"Tunnel"}}},
			&IPPool{TypeMeta: TypeMeta{APIVersion, "IPPool"}, Spec: IPPoolSpec{CIDR: "fd00::/48", BlockSize: 122, IPIPMode: "Never", VXLANMode: "Always", NodeSelector: "all()", AllowedUses: []string{"Tunnel"}}}},
		{"pool with host bits left for Validate", &IPPool{Spec: IPPoolSpec{CIDR: "10.0.0.1/16", BlockSize: 24}},
			&IPPool{TypeMeta: TypeMeta{APIVersion, "IPPool"}, Spec: IPPoolSpec{CIDR: "10.0.0.1/16", BlockSize: 24, IPIPMode: "Never", VXLANMode: "Never", NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}}}},
		{"bad pool cidr gets no block size", &IPPool{Spec: IPPoolSpec{CIDR: "nope"}},
			&IPPool{TypeMeta: TypeMeta{APIVersion, "IPPool"}, Spec: IPPoolSpec{CIDR: "nope", IPIPMode: "Never", VXLANMode: "Never", NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}}}},
		{"ipam config", &IPAMConfig{}, &IPAMConfig{TypeMeta: TypeMeta{APIVersion, "IPAMConfig"}, Spec: IPAMConfigSpec{AutoAllocateBlocks: ptr(true)}}},
		{"policy types: none", &NetworkPolicy{},
			&NetworkPolicy{TypeMeta: TypeMeta{APIVersion, "NetworkPolicy"}, ObjectMeta: ObjectMeta{Namespace: "default"}, Spec: NetworkPolicySpec{Types: []string{"Ingress"}}}},
		{"policy types: ingress only", &NetworkPolicy{Spec: NetworkPolicySpec{Ingress: []Rule{allow}}},
			&NetworkPolicy{TypeMeta: TypeMeta{APIVersion, "NetworkPolicy"}, ObjectMeta: ObjectMeta{Namespace: "default"}, Spec: NetworkPolicySpec{Types: []string{"Ingress"}, Ingress: []Rule{allow}}}},
		{"policy types: egress only", &GlobalNetworkPolicy{Spec: GlobalNetworkPolicySpec{Egress: []Rule{allow}}},
			&GlobalNetworkPolicy{TypeMeta: TypeMeta{APIVersion, "GlobalNetworkPolicy"}, Spec: GlobalNetworkPolicySpec{Types: []string{"Egress"}, Egress: []Rule{allow}}}},
		{"policy types: both", &GlobalNetworkPolicy{Spec: GlobalNetworkPolicySpec{Ingress: []Rule{allow}, Egress: []Rule{allow}}},
			&GlobalNetworkPolicy{TypeMeta: TypeMeta{APIVersion, "GlobalNetworkPolicy"}, Spec: GlobalNetworkPolicySpec{Types: []string{"Ingress", "Egress"}, Ingress: []Rule{allow}, Egress: []Rule{allow}}}},
		{"policy types kept", &NetworkPolicy{ObjectMeta: ObjectMeta{Namespace: "prod"}, Spec: NetworkPolicySpec{Types: []string{"Egress"}}},
			&NetworkPolicy{TypeMeta: TypeMeta{APIVersion, "NetworkPolicy"}, ObjectMeta: ObjectMeta{Namespace: "prod"}, Spec: NetworkPolicySpec{Types: []string{"Egress"}}}},
		{"protocol spelling", &Profile{Spec: ProfileSpec{Ingress: []Rule{{Action: "Allow", Protocol: &lower, NotProtocol: &zeroSix}}}},
			&Profile{TypeMeta: TypeMeta{APIVersion, "Profile"}, Spec: ProfileSpec{Ingress: []Rule{{Action: "Allow", Protocol: &tcp, NotProtocol: &six}}}}},
		{"workload endpoint", &WorkloadEndpoint{ObjectMeta: ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: WorkloadEndpointSpec{Orchestrator: "cni", Ports: []WorkloadEndpointPort{{Protocol: "udp"}}}},
			&WorkloadEndpoint{TypeMeta: TypeMeta{APIVersion, "WorkloadEndpoint"},
				ObjectMeta: ObjectMeta{Namespace: "default", Labels: map[string]string{"app": "web", LabelNamespace: "default", LabelOrchestrator: "cni"}},
				Spec:       WorkloadEndpointSpec{Orchestrator: "cni", Ports: []WorkloadEndpointPort{{Protocol: udp}}}}},
		{"host endpoint ports", &HostEndpoint{Spec: HostEndpointSpec{Ports: []EndpointPort{{Protocol: "sctp"}}}},
			&HostEndpoint{TypeMeta: TypeMeta{APIVersion, "HostEndpoint"}, Spec: HostEndpointSpec{Ports: []EndpointPort{{Protocol: ProtocolSCTP}}}}},
		{"failsafe protocols", &FelixConfiguration{Spec: FelixConfigurationSpec{FailsafeInboundHostPorts: &[]ProtoPort{{Protocol: "tcp", Port: 22}, {Protocol: "icmp"}}}},
			&FelixConfiguration{TypeMeta: TypeMeta{APIVersion, "FelixConfiguration"}, Spec: FelixConfigurationSpec{FailsafeInboundHostPorts: &[]ProtoPort{{Protocol: "TCP", Port: 22}, {Protocol: "icmp"}}}}},
		{"namespace kept", &NetworkSet{ObjectMeta: ObjectMeta{Namespace: "prod"}},
			&NetworkSet{TypeMeta: TypeMeta{APIVersion, "NetworkSet"}, ObjectMeta: ObjectMeta{Namespace: "prod"}}},
		{"calico api version kept", &Node{TypeMeta: TypeMeta{CalicoAPIVersion, "Node"}}, &Node{TypeMeta: TypeMeta{CalicoAPIVersion, "Node"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			SetDefaults(tc.in)
			if diff := cmp.Diff(tc.want, tc.in); diff != "" {
				t.Errorf("SetDefaults() mismatch (-want +got):\n%s", diff)
			}
			again := DeepCopy(tc.in)
			SetDefaults(again)
			if diff := cmp.Diff(tc.in, again); diff != "" {
				t.Errorf("SetDefaults() twice differs from once (-once +twice):\n%s", diff)
			}
		})
	}
	SetDefaults(nil) // must not panic
}

func TestAccessors(t *testing.T) {
	var nilBGP *BGPConfigurationSpec
	var nilIPAM *IPAMConfigSpec
	var nilFelix *FelixConfigurationSpec
	asn := ASNumber(65001)
	tests := []struct {
		name      string
		got, want any
	}{
		{"mesh default (nil)", nilBGP.MeshEnabled(), true},
		{"mesh default (unset)", (&BGPConfigurationSpec{}).MeshEnabled(), true},
		{"mesh off", (&BGPConfigurationSpec{NodeToNodeMeshEnabled: ptr(false)}).MeshEnabled(), false},
		{"asn default", nilBGP.ASN(), ASNumber(64512)},
		{"asn set", (&BGPConfigurationSpec{ASNumber: &asn}).ASN(), asn},
		{"port default", (&BGPConfigurationSpec{}).Port(), uint16(179)},
		{"port set", (&BGPConfigurationSpec{ListenPort: 1179}).Port(), uint16(1179)},
		{"grace default (nil)", nilIPAM.GracePeriod(), 15 * time.Minute},
		{"grace set", (&IPAMConfigSpec{LeakGracePeriod: &Duration{time.Hour}}).GracePeriod(), time.Hour},
		{"auto allocate default", nilIPAM.AutoAllocate(), true},
		{"auto allocate off", (&IPAMConfigSpec{AutoAllocateBlocks: ptr(false)}).AutoAllocate(), false},
		{"endpoint to host default", nilFelix.EndpointToHostAction(), "Drop"},
		{"endpoint to host set", (&FelixConfigurationSpec{DefaultEndpointToHostAction: "Accept"}).EndpointToHostAction(), "Accept"},
		{"block size default v4", (&IPPoolSpec{CIDR: "10.0.0.0/8"}).EffectiveBlockSize(), 26},
		{"block size default v6", (&IPPoolSpec{CIDR: "fd00::/8"}).EffectiveBlockSize(), 122},
		{"block size set", (&IPPoolSpec{CIDR: "10.0.0.0/8", BlockSize: 28}).EffectiveBlockSize(), 28},
		{"ip version", (&IPPoolSpec{CIDR: "fd00::/8"}).IPVersion(), 6},
		{"ip version bad", (&IPPoolSpec{CIDR: "x"}).IPVersion(), 0},
		{"uses default workload", (&IPPoolSpec{}).AllowsUse(AllowedUseWorkload), true},
		{"uses default tunnel", (&IPPoolSpec{}).AllowsUse(AllowedUseTunnel), true},
		{"uses tunnel only", (&IPPoolSpec{AllowedUses: []string{"Tunnel"}}).AllowsUse(AllowedUseWorkload), false},
		{"effective types", (&NetworkPolicySpec{Egress: []Rule{{}}}).EffectiveTypes(), []string{"Egress"}},
		{"effective types gnp", (&GlobalNetworkPolicySpec{Types: []string{"Ingress", "Egress"}}).EffectiveTypes(), []string{"Ingress", "Egress"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePeerIP(t *testing.T) {
	tests := []struct {
		in       string
		wantAddr string
		wantPort uint16
		wantErr  bool
	}{
		{"192.0.2.1", "192.0.2.1", 0, false},
		{"192.0.2.1:1179", "192.0.2.1", 1179, false},
		{"2001:db8::1", "2001:db8::1", 0, false},
		{"[2001:db8::1]:179", "2001:db8::1", 179, false},
		{"[2001:db8::1]", "", 0, true},
		{"192.0.2.1:0", "", 0, true},
		{"192.0.2.1:65536", "", 0, true},
		{"fe80::1%eth0", "", 0, true},
		{"router", "", 0, true},
		{"", "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			a, port, err := ParsePeerIP(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParsePeerIP(%q) error = %v; want error %t", tc.in, err, tc.wantErr)
			}
			if err == nil && (a.String() != tc.wantAddr || port != tc.wantPort) {
				t.Errorf("ParsePeerIP(%q) = %s, %d; want %s, %d", tc.in, a, port, tc.wantAddr, tc.wantPort)
			}
		})
	}
}

func TestParseNet(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"10.0.0.0/8", "10.0.0.0/8", false},
		{"10.0.0.1/8", "10.0.0.1/8", false},
		{"10.0.0.1", "10.0.0.1/32", false},
		{"fd00::1", "fd00::1/128", false},
		{"fd00::/8", "fd00::/8", false},
		{"10.0.0.0/33", "", true},
		{"010.0.0.1", "", true},
		{"fe80::1%eth0", "", true},
		{"", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseNet(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseNet(%q) error = %v; want error %t", tc.in, err, tc.wantErr)
			}
			if err == nil && got.String() != tc.want {
				t.Errorf("ParseNet(%q) = %s; want %s", tc.in, got, tc.want)
			}
		})
	}
}
