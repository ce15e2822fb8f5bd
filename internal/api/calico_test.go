package api

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Sample manifests from Calico's v3 resource reference
// (calico/reference/resources/*.md). They must apply to Tabby unchanged.
var calicoSamples = map[string]string{
	"ippool": `apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: my.ippool-1
spec:
  cidr: 10.1.0.0/16
  ipipMode: CrossSubnet
  natOutgoing: true
  disabled: false
  nodeSelector: all()
  allowedUses:
    - Workload
    - Tunnel
`,
	"ipamconfig": `apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: default
spec:
  strictAffinity: false
  maxBlocksPerHost: 4
`,
	"networkpolicy": `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-tcp-6379
  namespace: production
spec:
  selector: role == 'database'
  types:
  - Ingress
  - Egress
  ingress:
  - action: Allow
    metadata:
      annotations:
        from: frontend
        to: database
    protocol: TCP
    source:
      selector: role == 'frontend'
    destination:
      ports:
      - 6379
  egress:
  - action: Allow
`,
	"globalnetworkpolicy": `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-tcp-6379
spec:
  selector: role == 'database'
  types:
  - Ingress
  - Egress
  ingress:
  - action: Allow
    metadata:
      annotations:
        from: frontend
        to: database
    protocol: TCP
    source:
      selector: role == 'frontend'
    destination:
      ports:
      - 6379
  egress:
  - action: Allow
`,
	"tier": `apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: internal-access
spec:
  order: 100
  defaultAction: Pass
`,
	"tieredpolicy": `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.cluster-dns-allow-all
spec:
  tier: platform
  order: 1
  selector: ''
  namespaceSelector: ''
  serviceAccountSelector: ''
  ingress:
    - action: Allow
      protocol: UDP
      source:
        namespaceSelector: all()
      destination:
        selector: k8s-app == "kube-dns"
        ports:
          - '53'
  doNotTrack: false
  applyOnForward: false
  preDNAT: false
  types:
    - Ingress
`,
	"profile": `apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: dev-apps
spec:
  ingress:
  - action: Deny
    source:
      nets:
      - 10.0.20.0/24
  - action: Allow
    source:
      selector: stage == 'development'
  egress:
  - action: Allow
  labelsToApply:
    stage: development
`,
	"globalnetworkset": `apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: a-name-for-the-set
  labels:
    role: external-database
spec:
  nets:
  - 198.51.100.0/28
  - 203.0.113.0/24
`,
	"networkset": `apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata:
  name: external-database
  namespace: staging
  labels:
    role: db
spec:
  nets:
  - 198.51.100.0/28
  - 203.0.113.0/24
`,
	"hostendpoint": `apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: some.name
  labels:
    type: production
spec:
  interfaceName: eth0
  node: myhost
  expectedIPs:
  - 192.168.0.1
  - 192.168.0.2
  profiles:
  - profile1
  - profile2
  ports:
  - name: some-port
    port: 1234
    protocol: TCP
  - name: another-port
    port: 5432
    protocol: UDP
`,
	// The reference's sample lists "endpoint: eth0" twice and gives the
	// container ID as a 25-digit bare number; both are fixed here (see
	// TestCalicoSampleDefects).
	"workloadendpoint": `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-my--nginx--b1337a-eth0
  namespace: default
  labels:
    app: frontend
    projectcalico.org/namespace: default
    projectcalico.org/orchestrator: k8s
spec:
  node: node1
  orchestrator: k8s
  endpoint: eth0
  containerID: "1337495556942031415926535"
  pod: my-nginx-b1337a
  interfaceName: cali0ef24ba
  mac: ca:fe:1d:52:bb:e9
  ipNetworks:
  - 192.168.0.0/32
  profiles:
  - profile1
  ports:
  - name: some-port
    port: 1234
    protocol: TCP
  - name: another-port
    port: 5432
    protocol: UDP
`,
	"node": `apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-hostname
spec:
  bgp:
    asNumber: 64512
    ipv4Address: 10.244.0.1/24
    ipv6Address: 2001:db8:85a3::8a2e:370:7334/120
    ipv4IPIPTunnelAddr: 192.168.0.1
`,
	"bgpconfiguration": `apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: true
  nodeMeshMaxRestartTime: 120s
  asNumber: 63400
  serviceClusterIPs:
  - cidr: 10.96.0.0/12
  serviceExternalIPs:
  - cidr: 104.244.42.129/32
  - cidr: 172.217.3.0/24
  listenPort: 178
  bindMode: NodeIP
  communities:
  - name: bgp-large-community
    value: 63400:300:100
  prefixAdvertisements:
  - cidr: 172.218.4.0/26
    communities:
    - bgp-large-community
    - 63400:120
`,
	"bgppeer": `apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: some.name
spec:
  node: rack1-host1
  peerIP: 192.168.1.1
  asNumber: 63400
`,
	"bgppeer-selector": `apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
`,
	// Felix's reference sample sets iptables options Tabby does not have;
	// this one uses settings Tabby shares (see TestCalicoSampleDefects).
	"felixconfiguration": `apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  ipipMTU: 1400
  defaultEndpointToHostAction: Return
  logSeverityScreen: Info
  failsafeInboundHostPorts:
  - protocol: tcp
    port: 22
  - protocol: udp
    port: 68
`,
}

func TestCalicoSamplesDecode(t *testing.T) {
	for name, doc := range calicoSamples {
		t.Run(name, func(t *testing.T) {
			rs, err := Decode([]byte(doc))
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if len(rs) != 1 {
				t.Fatalf("Decode() gave %d resources; want 1", len(rs))
			}
			// Re-encoding (as tabby.dev/v1) gives the same resource back.
			var b bytes.Buffer
			if err := Encode(&b, rs, "yaml"); err != nil {
				t.Fatalf("Encode() error = %v", err)
			}
			again, err := Decode(b.Bytes())
			if err != nil {
				t.Fatalf("Decode(Encode()) error = %v\n%s", err, b.String())
			}
			if diff := cmp.Diff(rs, again); diff != "" {
				t.Errorf("round trip mismatch (-first +second):\n%s", diff)
			}
		})
	}
}

func TestCalicoSampleValues(t *testing.T) {
	decodeOne := func(t *testing.T, name string) Resource {
		t.Helper()
		rs, err := Decode([]byte(calicoSamples[name]))
		if err != nil {
			t.Fatalf("Decode(%s) error = %v", name, err)
		}
		return rs[0]
	}
	tcp := ProtocolTCP
	asn := ASNumber(63400)
	mesh := true
	tests := []struct {
		name string
		want Resource
	}{
		{"ippool", &IPPool{
			TypeMeta:   TypeMeta{APIVersion: APIVersion, Kind: "IPPool"},
			ObjectMeta: ObjectMeta{Name: "my.ippool-1"},
			Spec: IPPoolSpec{CIDR: "10.1.0.0/16", BlockSize: 26, IPIPMode: EncapCrossSubnet, VXLANMode: EncapNever,
				NATOutgoing: true, NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}},
		}},
		{"ipamconfig", &IPAMConfig{
			TypeMeta:   TypeMeta{APIVersion: APIVersion, Kind: "IPAMConfig"},
			ObjectMeta: ObjectMeta{Name: "default"},
			Spec:       IPAMConfigSpec{MaxBlocksPerHost: 4, AutoAllocateBlocks: ptr(true)},
		}},
		{"networkpolicy", &NetworkPolicy{
			TypeMeta:   TypeMeta{APIVersion: APIVersion, Kind: "NetworkPolicy"},
			ObjectMeta: ObjectMeta{Name: "allow-tcp-6379", Namespace: "production"},
			Spec: NetworkPolicySpec{
				Selector: "role == 'database'",
				Types:    []string{"Ingress", "Egress"},
				Ingress: []Rule{{
					Action:      "Allow",
					Metadata:    &RuleMetadata{Annotations: map[string]string{"from": "frontend", "to": "database"}},
					Protocol:    &tcp,
					Source:      EntityRule{Selector: "role == 'frontend'"},
					Destination: EntityRule{Ports: []Port{SinglePort(6379)}},
				}},
				Egress: []Rule{{Action: "Allow"}},
			},
		}},
		{"bgpconfiguration", &BGPConfiguration{
			TypeMeta:   TypeMeta{APIVersion: APIVersion, Kind: "BGPConfiguration"},
			ObjectMeta: ObjectMeta{Name: "default"},
			Spec: BGPConfigurationSpec{
				LogSeverityScreen: "Info", NodeToNodeMeshEnabled: &mesh, NodeMeshMaxRestartTime: &Duration{120 * time.Second},
				ASNumber: &asn, ServiceClusterIPs: []ServiceCIDR{{"10.96.0.0/12"}},
				ServiceExternalIPs: []ServiceCIDR{{"104.244.42.129/32"}, {"172.217.3.0/24"}},
				ListenPort:         178, BindMode: "NodeIP",
				Communities:          []Community{{Name: "bgp-large-community", Value: "63400:300:100"}},
				PrefixAdvertisements: []PrefixAdvert{{CIDR: "172.218.4.0/26", Communities: []string{"bgp-large-community", "63400:120"}}},
			},
		}},
		{"workloadendpoint", &WorkloadEndpoint{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "WorkloadEndpoint"},
			ObjectMeta: ObjectMeta{Name: "node1-k8s-my--nginx--b1337a-eth0", Namespace: "default", Labels: map[string]string{
				"app": "frontend", "projectcalico.org/namespace": "default", "projectcalico.org/orchestrator": "k8s"}},
			Spec: WorkloadEndpointSpec{
				Node: "node1", Orchestrator: "k8s", Endpoint: "eth0", ContainerID: "1337495556942031415926535",
				Pod: "my-nginx-b1337a", InterfaceName: "cali0ef24ba", MAC: "ca:fe:1d:52:bb:e9",
				IPNetworks: []string{"192.168.0.0/32"}, Profiles: []string{"profile1"},
				Ports: []WorkloadEndpointPort{{Name: "some-port", Port: 1234, Protocol: "TCP"}, {Name: "another-port", Port: 5432, Protocol: "UDP"}},
			},
		}},
		{"felixconfiguration", &FelixConfiguration{
			TypeMeta:   TypeMeta{APIVersion: APIVersion, Kind: "FelixConfiguration"},
			ObjectMeta: ObjectMeta{Name: "default"},
			Spec: FelixConfigurationSpec{IPIPMTU: 1400, DefaultEndpointToHostAction: "Return", LogSeverityScreen: "Info",
				FailsafeInboundHostPorts: &[]ProtoPort{{Protocol: "TCP", Port: 22}, {Protocol: "UDP", Port: 68}}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, decodeOne(t, tc.name)); diff != "" {
				t.Errorf("Decode() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestCalicoSampleDefects pins how Tabby treats the reference samples it
// cannot take verbatim: with an error naming the problem, never silently.
func TestCalicoSampleDefects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"duplicate key in workload endpoint sample", `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-my--nginx--b1337a-eth0
spec:
  node: node1
  endpoint: eth0
  pod: my-nginx-b1337a
  endpoint: eth0
`, `line 9: key "endpoint" already set in map`},
		{"numeric container id", `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-my--nginx--b1337a-eth0
spec:
  node: node1
  containerID: 1337495556942031415926535
`, `spec.containerID: got the number 1.3374955569420314e+24; a string is required (quote the value)`},
		{"felix iptables settings", `apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  ipv6Support: false
  ipipMTU: 1400
  chainInsertMode: Append
`, `spec.chainInsertMode: unknown field; spec.ipv6Support: unknown field`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode() error = %v; want it to contain %q", err, tc.want)
			}
		})
	}
}
