package api

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidateMetadata(t *testing.T) {
	long := strings.Repeat("a", 254)
	runValidateCases(t, []validateCase{
		{name: "good name with dots and dashes", doc: manifest("Profile", "{name: my.profile-1}", "{}")},
		{name: "name required", doc: manifest("Profile", "{name: ''}", "{}"), field: "metadata.name", detail: "is required"},
		{name: "uppercase name", doc: manifest("Profile", "{name: My_Profile}", "{}"), field: "metadata.name", detail: `"My_Profile" is not a valid name`},
		{name: "name ends with dash", doc: manifest("Profile", "{name: web-}", "{}"), field: "metadata.name", detail: "is not a valid name"},
		{name: "name too long", doc: manifest("Profile", "{name: "+long+"}", "{}"), field: "metadata.name", detail: "254 characters long"},
		{name: "namespace on cluster kind", doc: manifest("Profile", "{name: p, namespace: prod}", "{}"), field: "metadata.namespace", detail: "Profile is not namespaced"},
		{name: "bad namespace", doc: manifest("NetworkSet", "{name: s, namespace: Prod.1}", "{}"), field: "metadata.namespace", detail: `"Prod.1" is not a valid namespace`},
		{name: "good namespace", doc: manifest("NetworkSet", "{name: s, namespace: prod-1}", "{}")},
		{name: "good labels", doc: manifest("Profile", "{name: p, labels: {app: web, example.com/tier: front_end.1, empty: ''}}", "{}")},
		{name: "label key starts with dash", doc: manifest("Profile", "{name: p, labels: {-app: web}}", "{}"), field: "metadata.labels", detail: `key "-app" is not a valid label key`},
		{name: "label key bad prefix", doc: manifest("Profile", "{name: p, labels: {Example.com/app: web}}", "{}"), field: "metadata.labels", detail: "must be a DNS subdomain"},
		{name: "label key two slashes", doc: manifest("Profile", "{name: p, labels: {a/b/c: web}}", "{}"), field: "metadata.labels", detail: "is not a valid label key"},
		{name: "label key name too long", doc: manifest("Profile", "{name: p, labels: {"+strings.Repeat("k", 64)+": v}}", "{}"), field: "metadata.labels", detail: "64 characters long"},
		{name: "label value with space", doc: manifest("Profile", "{name: p, labels: {app: 'web server'}}", "{}"), field: `metadata.labels["app"]`, detail: `"web server" is not a valid label value`},
		{name: "label value too long", doc: manifest("Profile", "{name: p, labels: {app: "+strings.Repeat("v", 64)+"}}", "{}"), field: `metadata.labels["app"]`, detail: "64 characters long"},
		{name: "good annotations", doc: manifest("Profile", "{name: p, annotations: {example.com/Note: 'any text: at all'}}", "{}")},
		{name: "bad annotation key", doc: manifest("Profile", "{name: p, annotations: {'bad key': x}}", "{}"), field: "metadata.annotations", detail: `key "bad key"`},
		{name: "annotations too large", doc: manifest("Profile", "{name: p, annotations: {a: "+strings.Repeat("x", 256<<10)+"}}", "{}"), field: "metadata.annotations", detail: "at most 262144"},
		{name: "network policy tier prefix", doc: manifest("NetworkPolicy", "{name: default.allow-web}", "{}")},
		{name: "network policy two dots", doc: manifest("NetworkPolicy", "{name: a.b.c}", "{}"), field: "metadata.name", detail: "is not a valid policy name"},
		{name: "network policy knp prefix", doc: manifest("NetworkPolicy", "{name: knp.default.a.b}", "{}")},
		{name: "global policy tier prefix", doc: manifest("GlobalNetworkPolicy", "{name: security.deny-all}", "{}")},
		{name: "global policy two dots", doc: manifest("GlobalNetworkPolicy", "{name: a.b.c}", "{}"), field: "metadata.name", detail: "is not a valid policy name"},
	})
}

func TestValidateIPPool(t *testing.T) {
	pool := func(spec string) string { return manifest("IPPool", "{name: pool-1}", spec) }
	runValidateCases(t, []validateCase{
		{name: "good v4", doc: pool("{cidr: 10.48.0.0/16}")},
		{name: "good v6", doc: pool("{cidr: 'fd00:48::/64'}")},
		{name: "good v6 vxlan", doc: pool("{cidr: 'fd00:48::/64', vxlanMode: Always}")},
		{name: "good everything", doc: pool("{cidr: 10.1.0.0/16, blockSize: 24, ipipMode: CrossSubnet, natOutgoing: true, disabled: false, disableBGPExport: true, nodeSelector: all(), allowedUses: [Workload]}")},
		{name: "cidr required", doc: pool("{}"), field: "spec.cidr", detail: "is required"},
		{name: "cidr not a cidr", doc: pool("{cidr: 10.0.0.0}"), field: "spec.cidr", detail: `"10.0.0.0" is not a CIDR`},
		{name: "cidr bad prefix length", doc: pool("{cidr: 10.0.0.0/33}"), field: "spec.cidr", detail: "is not a CIDR"},
		{name: "cidr host bits", doc: pool("{cidr: 10.0.0.1/16}"), field: "spec.cidr", detail: `has host bits set; did you mean "10.0.0.0/16"?`},
		{name: "cidr v4 link local", doc: pool("{cidr: 169.254.0.0/16}"), field: "spec.cidr", detail: "overlaps the reserved range 169.254.0.0/16"},
		{name: "cidr containing link local", doc: pool("{cidr: 169.0.0.0/8, blockSize: 26}"), field: "spec.cidr", detail: "overlaps the reserved range 169.254.0.0/16"},
		{name: "cidr v6 link local", doc: pool("{cidr: 'fe80::/64'}"), field: "spec.cidr", detail: "overlaps the reserved range fe80::/10"},
		{name: "cidr loopback", doc: pool("{cidr: 127.0.0.0/16}"), field: "spec.cidr", detail: "reserved range 127.0.0.0/8"},
		{name: "block size v4 too small", doc: pool("{cidr: 10.0.0.0/8, blockSize: 19}"), field: "spec.blockSize", detail: "19 is not allowed for an IPv4 pool; use 20 to 32"},
		{name: "block size v4 too large", doc: pool("{cidr: 10.0.0.0/8, blockSize: 33}"), field: "spec.blockSize", detail: "use 20 to 32"},
		{name: "block size v4 edges", doc: pool("{cidr: 10.0.0.0/8, blockSize: 20}")},
		{name: "block size 32", doc: pool("{cidr: 10.0.0.0/8, blockSize: 32}")},
		{name: "block size v6", doc: pool("{cidr: 'fd00::/64', blockSize: 115}"), field: "spec.blockSize", detail: "use 116 to 128"},
		{name: "block size v4 on v6 pool", doc: pool("{cidr: 'fd00::/64', blockSize: 26}"), field: "spec.blockSize", detail: "IPv6 pool"},
		{name: "pool smaller than block", doc: pool("{cidr: 10.0.0.0/27}"), field: "spec.blockSize", detail: "26 is larger than the pool 10.0.0.0/27"},
		{name: "pool equal to block", doc: pool("{cidr: 10.0.0.0/26}")},
		{name: "ipip lowercase", doc: pool("{cidr: 10.0.0.0/16, ipipMode: always}"), field: "spec.ipipMode", detail: `"always" is not allowed; use Always, CrossSubnet or Never`},
		{name: "vxlan bad", doc: pool("{cidr: 10.0.0.0/16, vxlanMode: Sometimes}"), field: "spec.vxlanMode", detail: "is not allowed"},
		{name: "ipip and vxlan", doc: pool("{cidr: 10.0.0.0/16, ipipMode: Always, vxlanMode: CrossSubnet}"), field: "spec.vxlanMode", detail: "enable at most one encapsulation"},
		{name: "ipip never vxlan always", doc: pool("{cidr: 10.0.0.0/16, ipipMode: Never, vxlanMode: Always}")},
		{name: "ipip on v6", doc: pool("{cidr: 'fd00::/64', ipipMode: CrossSubnet}"), field: "spec.ipipMode", detail: "IPIP carries IPv4 only"},
		{name: "allowed use unknown", doc: pool("{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer]}"), field: "spec.allowedUses[0]", detail: `"LoadBalancer" is not allowed; use Workload or Tunnel`},
		{name: "allowed use twice", doc: pool("{cidr: 10.0.0.0/16, allowedUses: [Tunnel, Tunnel]}"), field: "spec.allowedUses[1]", detail: "listed twice"},
		{name: "node selector", doc: pool("{cidr: 10.0.0.0/16, nodeSelector: \"rack == 'a'\"}")},
		{name: "bad node selector", doc: pool("{cidr: 10.0.0.0/16, nodeSelector: 'rack =='}"), field: "spec.nodeSelector", detail: "is not a valid selector"},
	})
}

func TestValidateIPPoolWithoutDefaults(t *testing.T) {
	p := &IPPool{ObjectMeta: ObjectMeta{Name: "p"}, Spec: IPPoolSpec{CIDR: "fd00:0::/48"}}
	checkProblem(t, Validate(p), "spec.cidr", `is not in canonical form; write "fd00::/48"`)
	SetDefaults(p)
	checkProblem(t, Validate(p), "", "")
}

func TestValidateIPAMConfig(t *testing.T) {
	cfg := func(name, spec string) string { return manifest("IPAMConfig", "{name: "+name+"}", spec) }
	runValidateCases(t, []validateCase{
		{name: "good", doc: cfg("default", "{strictAffinity: false, maxBlocksPerHost: 4}")},
		{name: "name must be default", doc: cfg("other", "{}"), field: "metadata.name", detail: `"other" is not allowed: the name must be "default"`},
		{name: "no per-node config", doc: cfg("node.a", "{}"), field: "metadata.name", detail: "must be \"default\""},
		{name: "negative blocks", doc: cfg("default", "{maxBlocksPerHost: -1}"), field: "spec.maxBlocksPerHost", detail: "-1 is negative"},
		{name: "zero blocks", doc: cfg("default", "{maxBlocksPerHost: 0}")},
		{name: "no auto allocate without strict", doc: cfg("default", "{autoAllocateBlocks: false}"), field: "spec.autoAllocateBlocks", detail: "requires strictAffinity: true"},
		{name: "no auto allocate with strict", doc: cfg("default", "{autoAllocateBlocks: false, strictAffinity: true}")},
		{name: "grace period", doc: cfg("default", "{leakGracePeriod: 30m}")},
		{name: "negative grace period", doc: cfg("default", "{leakGracePeriod: -1m}"), field: "spec.leakGracePeriod", detail: "must not be negative"},
	})
}

func TestValidateBGPConfiguration(t *testing.T) {
	cfg := func(name, spec string) string { return manifest("BGPConfiguration", "{name: "+name+"}", spec) }
	runValidateCases(t, []validateCase{
		{name: "good default", doc: cfg("default", "{nodeToNodeMeshEnabled: false, asNumber: 65000, listenPort: 1179, bindMode: NodeIP, logSeverityScreen: Debug}")},
		{name: "good per node", doc: cfg("node.host-1", "{logSeverityScreen: Warning, listenPort: 1179}")},
		{name: "bad name", doc: cfg("cluster", "{}"), field: "metadata.name", detail: `the name must be "default" or "node.<node name>"`},
		{name: "empty node name", doc: cfg("node.", "{}"), field: "metadata.name", detail: "node.<node name>"},
		{name: "per node asNumber", doc: cfg("node.host-1", "{asNumber: 65001}"), field: "spec.asNumber", detail: `may only be set in the BGPConfiguration named "default"`},
		{name: "per node mesh", doc: cfg("node.host-1", "{nodeToNodeMeshEnabled: true}"), field: "spec.nodeToNodeMeshEnabled", detail: "may only be set"},
		{name: "log level", doc: cfg("default", "{logSeverityScreen: verbose}"), field: "spec.logSeverityScreen", detail: `"verbose" is not allowed`},
		{name: "as 0", doc: cfg("default", "{asNumber: 0}"), field: "spec.asNumber", detail: "0 is not a valid AS number"},
		{name: "as dotted", doc: cfg("default", "{asNumber: '1.10'}")},
		{name: "bind mode", doc: cfg("default", "{bindMode: All}"), field: "spec.bindMode", detail: "use None or NodeIP"},
		{name: "service cidr", doc: cfg("default", "{serviceClusterIPs: [{cidr: 10.96.0.0/33}]}"), field: "spec.serviceClusterIPs[0].cidr", detail: "is not a CIDR"},
		{name: "communities", doc: cfg("default", "{communities: [{name: c1, value: '65000:100'}, {name: big, value: '4200000000:1:2'}], prefixAdvertisements: [{cidr: 10.0.0.0/24, communities: [c1, big, '65000:7']}]}")},
		{name: "community bad value", doc: cfg("default", "{communities: [{name: c1, value: '70000:1'}], prefixAdvertisements: [{cidr: 10.0.0.0/24, communities: [c1]}]}"), field: "spec.communities[0].value", detail: "is not a BGP community"},
		{name: "community four parts", doc: cfg("default", "{communities: [{name: c1, value: '1:2:3:4'}], prefixAdvertisements: [{cidr: 10.0.0.0/24, communities: [c1]}]}"), field: "spec.communities[0].value", detail: "is not a BGP community"},
		{name: "community unused", doc: cfg("default", "{communities: [{name: c1, value: '1:2'}]}"), field: "spec.communities", detail: "no prefixAdvertisements use them"},
		{name: "community undefined", doc: cfg("default", "{prefixAdvertisements: [{cidr: 10.0.0.0/24, communities: [nope]}]}"), field: "spec.prefixAdvertisements[0].communities[0]", detail: `"nope" is neither`},
		{name: "mesh password", doc: cfg("default", "{nodeMeshPassword: {secretKeyRef: {name: bgp, key: mesh}}}")},
		{name: "mesh password without mesh", doc: cfg("default", "{nodeToNodeMeshEnabled: false, nodeMeshPassword: {file: /etc/tabby/mesh}}"), field: "spec.nodeMeshPassword", detail: "not allowed when nodeToNodeMeshEnabled is false"},
		{name: "mesh restart without mesh", doc: cfg("default", "{nodeToNodeMeshEnabled: false, nodeMeshMaxRestartTime: 120s}"), field: "spec.nodeMeshMaxRestartTime", detail: "not allowed"},
		{name: "mesh bfd", doc: cfg("default", "{nodeMeshBFD: {enabled: true, minRxMs: 100, minTxMs: 100, multiplier: 3}}")},
		{name: "mesh bfd multiplier", doc: cfg("default", "{nodeMeshBFD: {enabled: true, multiplier: 0}}"), field: "spec.nodeMeshBFD.multiplier", detail: "0: must be 1..255"},
		{name: "mesh bfd without mesh", doc: cfg("default", "{nodeToNodeMeshEnabled: false, nodeMeshBFD: {enabled: true}}"), field: "spec.nodeMeshBFD", detail: "not allowed when nodeToNodeMeshEnabled is false"},
		{name: "per node mesh bfd", doc: cfg("node.host-1", "{nodeMeshBFD: {enabled: true}}"), field: "spec.nodeMeshBFD", detail: "may only be set"},
		{name: "ignored interfaces", doc: cfg("default", "{ignoredInterfaces: ['docker*', eth1]}")},
		{name: "ignored interface star", doc: cfg("default", "{ignoredInterfaces: ['*']}"), field: "spec.ignoredInterfaces[0]", detail: "not '*' alone"},
	})
}

func TestValidateBGPPeer(t *testing.T) {
	peer := func(spec string) string { return manifest("BGPPeer", "{name: peer-1}", spec) }
	runValidateCases(t, []validateCase{
		{name: "good node peer", doc: peer("{node: rack1-host1, peerIP: 192.168.1.1, asNumber: 63400}")},
		{name: "good global peer with port", doc: peer("{peerIP: '192.168.1.1:1179', asNumber: 63400}")},
		{name: "good v6 peer", doc: peer("{peerIP: '2001:db8::1', asNumber: 63400}")},
		{name: "good v6 peer with port", doc: peer("{peerIP: '[2001:db8::1]:1179', asNumber: 63400}")},
		{name: "good selector peer", doc: peer("{nodeSelector: \"rack == 'a'\", peerSelector: \"rr == 'true'\"}")},
		{name: "port 0", doc: peer("{peerIP: '192.168.1.1:0', asNumber: 1}"), field: "spec.peerIP", detail: "is not an IP address, IPv4:port or [IPv6]:port"},
		{name: "bad ip", doc: peer("{peerIP: 300.1.1.1, asNumber: 1}"), field: "spec.peerIP", detail: `"300.1.1.1" is not an IP address`},
		{name: "hostname", doc: peer("{peerIP: 'tor:179', asNumber: 1}"), field: "spec.peerIP", detail: "is not an IP address"},
		{name: "v6 without brackets", doc: peer("{peerIP: '2001:db8::1:179x', asNumber: 1}"), field: "spec.peerIP", detail: "is not an IP address"},
		{name: "as required", doc: peer("{peerIP: 192.168.1.1}"), field: "spec.asNumber", detail: "is required with peerIP"},
		{name: "node and node selector", doc: peer("{node: a, nodeSelector: all(), peerIP: 192.168.1.1, asNumber: 1}"), field: "spec.nodeSelector", detail: "not allowed together with node"},
		{name: "peer ip and selector", doc: peer("{peerIP: 192.168.1.1, peerSelector: all(), asNumber: 1}"), field: "spec.peerSelector", detail: "not allowed together with peerIP"},
		{name: "no target", doc: peer("{node: a}"), field: "spec.peerIP", detail: "is required (or set peerSelector)"},
		{name: "as with selector", doc: peer("{peerSelector: all(), asNumber: 1}"), field: "spec.asNumber", detail: "not allowed with peerSelector"},
		{name: "password secret", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {secretKeyRef: {name: bgp-secrets, key: rr-password}}}")},
		{name: "password value", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {value: s3cret}}")},
		{name: "password two sources", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {value: s3cret, file: /etc/pw}}"), field: "spec.password", detail: "set exactly one of secretKeyRef, value or file (2 are set)"},
		{name: "password no source", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {}}"), field: "spec.password", detail: "(0 are set)"},
		{name: "password key missing", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {secretKeyRef: {name: s}}}"), field: "spec.password.secretKeyRef.key", detail: "is required"},
		{name: "password relative file", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {file: pw.txt}}"), field: "spec.password.file", detail: "not an absolute path"},
		{name: "password redacted", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {value: <redacted>}}"), field: "spec.password.value", detail: "placeholder"},
		{name: "password too long", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, password: {value: " + strings.Repeat("p", 81) + "}}"), field: "spec.password.value", detail: "at most 80"},
		{name: "source address", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, sourceAddress: Node}"), field: "spec.sourceAddress", detail: "use UseNodeIP or None"},
		{name: "reachable by", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, reachableBy: 10.0.0.1}")},
		{name: "reachable by family", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, reachableBy: '2001:db8::1'}"), field: "spec.reachableBy", detail: "different IP versions"},
		{name: "reachable by without peer ip", doc: peer("{peerSelector: all(), reachableBy: 10.0.0.1}"), field: "spec.reachableBy", detail: "requires peerIP"},
		{name: "keepalive zero", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, keepaliveTime: 0s}"), field: "spec.keepaliveTime", detail: "must be positive"},
		{name: "bad node name", doc: peer("{node: Rack_1, peerIP: 192.168.1.1, asNumber: 1}"), field: "spec.node", detail: "is not a valid name"},
		{name: "bad peer selector", doc: peer("{peerSelector: 'rr =='}"), field: "spec.peerSelector", detail: "is not a valid selector"},
		{name: "bfd", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, bfd: {enabled: true, minRxMs: 100, minTxMs: 50, multiplier: 5}}")},
		{name: "bfd defaults", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, bfd: {enabled: true}}")},
		{name: "bfd multiplier 0", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, bfd: {enabled: true, multiplier: 0}}"), field: "spec.bfd.multiplier", detail: "0: must be 1..255"},
		{name: "bfd multiplier 256", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, bfd: {enabled: true, multiplier: 256}}"), field: "spec.bfd.multiplier", detail: "256: must be 1..255"},
		{name: "bfd rx too fast", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, bfd: {enabled: true, minRxMs: 5}}"), field: "spec.bfd.minRxMs", detail: "5: must be 10..60000 (milliseconds)"},
		{name: "bfd tx negative", doc: peer("{peerIP: 192.168.1.1, asNumber: 1, bfd: {enabled: true, minTxMs: -1}}"), field: "spec.bfd.minTxMs", detail: "-1: must be 10..60000"},
	})
}

func TestValidateFelixConfiguration(t *testing.T) {
	cfg := func(name, spec string) string { return manifest("FelixConfiguration", "{name: "+name+"}", spec) }
	var cases []validateCase
	for _, a := range []string{"Drop", "Return", "Accept"} {
		cases = append(cases, validateCase{name: "action " + a, doc: cfg("default", "{defaultEndpointToHostAction: "+a+"}")})
	}
	cases = append(cases, []validateCase{
		{name: "action uppercase", doc: cfg("default", "{defaultEndpointToHostAction: DROP}"), field: "spec.defaultEndpointToHostAction", detail: `"DROP" is not allowed; use Drop, Return or Accept`},
		{name: "per node", doc: cfg("node.host-1", "{logSeverityScreen: Debug}")},
		{name: "bad name", doc: cfg("host-1", "{}"), field: "metadata.name", detail: "must be \"default\" or \"node.<node name>\""},
		{name: "failsafe", doc: cfg("default", "{failsafeInboundHostPorts: [{protocol: tcp, port: 22}, {protocol: UDP, port: 68, net: 10.0.0.0/8}], failsafeOutboundHostPorts: []}")},
		{name: "failsafe protocol", doc: cfg("default", "{failsafeInboundHostPorts: [{protocol: icmp, port: 22}]}"), field: "spec.failsafeInboundHostPorts[0].protocol", detail: `"icmp" is not allowed`},
		{name: "failsafe port 0", doc: cfg("default", "{failsafeOutboundHostPorts: [{protocol: udp, port: 0}]}"), field: "spec.failsafeOutboundHostPorts[0].port", detail: "0 is not a port"},
		{name: "failsafe net", doc: cfg("default", "{failsafeOutboundHostPorts: [{protocol: udp, port: 53, net: dns}]}"), field: "spec.failsafeOutboundHostPorts[0].net", detail: "is not an IP address or CIDR"},
		{name: "vni", doc: cfg("default", "{vxlanVNI: 16777216}"), field: "spec.vxlanVNI", detail: "is not a VXLAN VNI"},
		{name: "vxlan port", doc: cfg("default", "{vxlanPort: 70000}"), field: "spec.vxlanPort", detail: "is not a port"},
		{name: "mtu", doc: cfg("default", "{ipipMTU: -1}"), field: "spec.ipipMTU", detail: "is not an MTU"},
		{name: "nat address v6", doc: cfg("default", "{natOutgoingAddress: '2001:db8::1'}"), field: "spec.natOutgoingAddress", detail: "is not an IPv4 address"},
		{name: "interface prefixes", doc: cfg("default", "{interfacePrefix: 'tby,cali'}")},
		{name: "bad interface prefix", doc: cfg("default", "{interfacePrefix: 'tby,'}"), field: "spec.interfacePrefix", detail: "is not an interface prefix"},
		{name: "log level", doc: cfg("default", "{logSeverityScreen: info}"), field: "spec.logSeverityScreen", detail: "is not allowed"},
	}...)
	runValidateCases(t, cases)
}

func TestValidateNode(t *testing.T) {
	node := func(spec string) string { return manifest("Node", "{name: host-1}", spec) }
	runValidateCases(t, []validateCase{
		{name: "good", doc: node("{bgp: {asNumber: 64512, ipv4Address: 10.244.0.1/24, ipv6Address: '2001:db8:85a3::8a2e:370:7334/120', ipv4IPIPTunnelAddr: 192.168.0.1, routeReflectorClusterID: 224.0.0.1}, addresses: [{address: 10.244.0.1, type: InternalIP}], orchRefs: [{nodeName: host-1, orchestrator: mesos}]}")},
		{name: "no bgp", doc: node("{}")},
		{name: "empty bgp", doc: node("{bgp: {}}"), field: "spec.bgp", detail: "is empty"},
		{name: "ipv4 address is v6", doc: node("{bgp: {ipv4Address: '2001:db8::1/64'}}"), field: "spec.bgp.ipv4Address", detail: "is not an IPv4 network"},
		{name: "ipv6 address bad", doc: node("{bgp: {ipv6Address: 'zz::1'}}"), field: "spec.bgp.ipv6Address", detail: "is not an IP address or CIDR"},
		{name: "as 0", doc: node("{bgp: {ipv4Address: 10.0.0.1/24, asNumber: 0}}"), field: "spec.bgp.asNumber", detail: "0 is not a valid AS number"},
		{name: "cluster id", doc: node("{bgp: {ipv4Address: 10.0.0.1/24, routeReflectorClusterID: rr1}}"), field: "spec.bgp.routeReflectorClusterID", detail: "is not an IP address"},
		{name: "tunnel mac", doc: node("{vxlanTunnelMACAddr: 'ee:ee:ee'}"), field: "spec.vxlanTunnelMACAddr", detail: "is not a MAC address"},
		{name: "address type", doc: node("{addresses: [{address: 10.0.0.1, type: Public}]}"), field: "spec.addresses[0].type", detail: "use CalicoNodeIP, InternalIP or ExternalIP"},
		{name: "orchestrator required", doc: node("{orchRefs: [{nodeName: a}]}"), field: "spec.orchRefs[0].orchestrator", detail: "is required"},
		{name: "heartbeat", doc: "apiVersion: tabby.dev/v1\nkind: Node\nmetadata: {name: a}\nspec: {}\nstatus: {lastHeartbeat: yesterday}\n", field: "status.lastHeartbeat", detail: "is not an RFC 3339 time"},
	})
}

func TestValidateWorkloadEndpoint(t *testing.T) {
	wep := func(spec string) string {
		return manifest("WorkloadEndpoint", "{name: host--1-cni-abc123-eth0, namespace: default}", spec)
	}
	runValidateCases(t, []validateCase{
		{name: "good", doc: wep("{node: host-1, orchestrator: cni, workload: abc123, containerID: abc123, endpoint: eth0, interfaceName: tby0123456789a, mac: 'ca:fe:1d:52:bb:e9', ipNetworks: [10.48.0.5/32, 'fd00::5/128'], ipv4Gateway: 169.254.1.1, profiles: [net-1], ports: [{name: http, port: 80, protocol: TCP}, {port: 8080, hostPort: 18080, protocol: tcp, hostIP: 192.0.2.10}], ipNATs: [{internalIP: 10.48.0.5, externalIP: 192.0.2.99}]}")},
		{name: "bare address", doc: wep("{node: host-1, ipNetworks: [10.48.0.5]}")},
		{name: "node required", doc: wep("{ipNetworks: [10.48.0.5/32]}"), field: "spec.node", detail: "is required"},
		{name: "network not single", doc: wep("{node: a, ipNetworks: [10.48.0.0/24]}"), field: "spec.ipNetworks[0]", detail: "holds more than one address"},
		{name: "network bad", doc: wep("{node: a, ipNetworks: [10.48.0.300/32]}"), field: "spec.ipNetworks[0]", detail: "is not a CIDR"},
		{name: "mac", doc: wep("{node: a, mac: 'ca:fe'}"), field: "spec.mac", detail: `"ca:fe" is not a MAC address`},
		{name: "port protocol", doc: wep("{node: a, ports: [{name: ping, protocol: ICMP, port: 1}]}"), field: "spec.ports[0].protocol", detail: `"ICMP" is not allowed`},
		{name: "port 0", doc: wep("{node: a, ports: [{name: http, protocol: TCP, port: 0}]}"), field: "spec.ports[0].port", detail: "0 is not a port"},
		{name: "port name required", doc: wep("{node: a, ports: [{protocol: TCP, port: 80}]}"), field: "spec.ports[0].name", detail: "is required"},
		{name: "port name bad", doc: wep("{node: a, ports: [{name: HTTP_1, protocol: TCP, port: 80}]}"), field: "spec.ports[0].name", detail: "is not a port name"},
		{name: "port name twice", doc: wep("{node: a, ports: [{name: http, protocol: TCP, port: 80}, {name: http, protocol: UDP, port: 80}]}"), field: "spec.ports[1].name", detail: "used by another port"},
		{name: "host ip without host port", doc: wep("{node: a, ports: [{name: http, protocol: TCP, port: 80, hostIP: 10.0.0.1}]}"), field: "spec.ports[0].hostIP", detail: "requires hostPort"},
		{name: "nat outside networks", doc: wep("{node: a, ipNetworks: [10.48.0.5/32], ipNATs: [{internalIP: 10.48.0.6, externalIP: 192.0.2.1}]}"), field: "spec.ipNATs[0].internalIP", detail: "is not one of the endpoint's ipNetworks"},
		{name: "nat versions", doc: wep("{node: a, ipNetworks: [10.48.0.5/32], ipNATs: [{internalIP: 10.48.0.5, externalIP: '2001:db8::1'}]}"), field: "spec.ipNATs[0].externalIP", detail: "not of the same IP version"},
		{name: "interface name too long", doc: wep("{node: a, interfaceName: tby0123456789abcdef}"), field: "spec.interfaceName", detail: "is not an interface name"},
		{name: "gateway version", doc: wep("{node: a, ipv4Gateway: 'fe80::1'}"), field: "spec.ipv4Gateway", detail: "is not an IPv4 address"},
		{name: "container id", doc: wep("{node: a, containerID: 'abc/def'}"), field: "spec.containerID", detail: "is not a container ID"},
		{name: "profile name", doc: wep("{node: a, profiles: [Net_1]}"), field: "spec.profiles[0]", detail: "is not a valid name"},
	})
}

func TestValidateHostEndpoint(t *testing.T) {
	hep := func(spec string) string { return manifest("HostEndpoint", "{name: host-1-eth0}", spec) }
	runValidateCases(t, []validateCase{
		{name: "interface", doc: hep("{node: host-1, interfaceName: eth0}")},
		{name: "all interfaces", doc: hep("{node: host-1, interfaceName: '*'}")},
		{name: "expected ips only", doc: hep("{node: host-1, expectedIPs: [192.168.0.1, '2001:db8::1']}")},
		{name: "neither", doc: hep("{node: host-1}"), field: "spec.interfaceName", detail: "is required unless expectedIPs are given"},
		{name: "node required", doc: hep("{interfaceName: eth0}"), field: "spec.node", detail: "is required"},
		{name: "expected ip cidr", doc: hep("{node: a, expectedIPs: [192.168.0.0/24]}"), field: "spec.expectedIPs[0]", detail: "is not an IP address"},
		{name: "bad interface", doc: hep("{node: a, interfaceName: 'eth 0'}"), field: "spec.interfaceName", detail: "is not an interface name"},
		{name: "port name required", doc: hep("{node: a, interfaceName: eth0, ports: [{protocol: UDP, port: 53}]}"), field: "spec.ports[0].name", detail: "is required"},
		{name: "port protocol number", doc: hep("{node: a, interfaceName: eth0, ports: [{name: dns, protocol: 17, port: 53}]}")},
		{name: "port protocol bad", doc: hep("{node: a, interfaceName: eth0, ports: [{name: gre, protocol: 47, port: 1}]}"), field: "spec.ports[0].protocol", detail: `"47" is not allowed`},
	})
}

func TestValidateNetworkSets(t *testing.T) {
	runValidateCases(t, []validateCase{
		{name: "global good", doc: manifest("GlobalNetworkSet", "{name: external, labels: {role: db}}", "{nets: [198.51.100.0/28, 203.0.113.7, '2001:db8::/32']}")},
		{name: "namespaced good", doc: manifest("NetworkSet", "{name: external, namespace: staging}", "{nets: [198.51.100.0/28]}")},
		{name: "bad net", doc: manifest("GlobalNetworkSet", "{name: s}", "{nets: [198.51.100.0/33]}"), field: "spec.nets[0]", detail: `"198.51.100.0/33" is not a CIDR`},
		{name: "bad address", doc: manifest("NetworkSet", "{name: s}", "{nets: [example.com]}"), field: "spec.nets[0]", detail: "is not an IP address or CIDR"},
		{name: "namespace label", doc: manifest("NetworkSet", "{name: s, labels: {projectcalico.org/namespace: x}}", "{}"), field: "metadata.labels", detail: "is reserved"},
	})
}

func TestValidatePolicy(t *testing.T) {
	np := func(spec string) string { return manifest("NetworkPolicy", "{name: pol, namespace: prod}", spec) }
	gnp := func(spec string) string { return manifest("GlobalNetworkPolicy", "{name: pol}", spec) }
	in := func(rule string) string { return np("{ingress: [" + rule + "]}") }
	many := strings.TrimSuffix(strings.Repeat("{action: Allow}, ", 1025), ", ")
	runValidateCases(t, []validateCase{
		{name: "good", doc: np("{order: 100, selector: \"role == 'db'\", types: [Ingress, Egress], ingress: [{action: Allow, protocol: TCP, source: {selector: \"role == 'frontend'\"}, destination: {ports: [6379, '8000:8080', redis]}}], egress: [{action: Allow}]}")},
		{name: "action required", doc: in("{protocol: TCP}"), field: "spec.ingress[0].action", detail: "is required"},
		{name: "action lowercase", doc: in("{action: allow}"), field: "spec.ingress[0].action", detail: `"allow" is not allowed; use Allow, Deny, Log or Pass`},
		{name: "actions", doc: np("{ingress: [{action: Log}, {action: Pass}, {action: Deny}]}")},
		{name: "ip version", doc: in("{action: Allow, ipVersion: 5}"), field: "spec.ingress[0].ipVersion", detail: "5 is not an IP version"},
		{name: "protocol name", doc: in("{action: Allow, protocol: tcpx}"), field: "spec.ingress[0].protocol", detail: `"tcpx" is not a protocol`},
		{name: "protocol 0", doc: in("{action: Allow, protocol: 0}"), field: "spec.ingress[0].protocol", detail: `"0" is not a protocol`},
		{name: "protocol 256", doc: in("{action: Allow, protocol: 256}"), field: "spec.ingress[0].protocol", detail: `"256" is not a protocol`},
		{name: "protocol numbers", doc: np("{ingress: [{action: Allow, protocol: 1}, {action: Allow, protocol: 255}, {action: Allow, protocol: '132'}]}")},
		{name: "protocol names any case", doc: np("{ingress: [{action: Allow, protocol: sctp}, {action: Allow, protocol: UdpLite}, {action: Allow, protocol: icmpv6}]}")},
		{name: "not protocol", doc: in("{action: Deny, notProtocol: IGMP}"), field: "spec.ingress[0].notProtocol", detail: `"IGMP" is not a protocol`},
		{name: "icmp good", doc: in("{action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}, notICMP: {type: 0}}")},
		{name: "icmp type 254", doc: in("{action: Allow, protocol: ICMPv6, icmp: {type: 254, code: 255}}")},
		{name: "icmp type 255", doc: in("{action: Allow, protocol: ICMP, icmp: {type: 255}}"), field: "spec.ingress[0].icmp.type", detail: "255 is not an ICMP type; use 0 to 254"},
		{name: "icmp code 256", doc: in("{action: Allow, protocol: ICMP, icmp: {type: 3, code: 256}}"), field: "spec.ingress[0].icmp.code", detail: "256 is not an ICMP code"},
		{name: "icmp code without type", doc: in("{action: Allow, protocol: ICMP, icmp: {code: 1}}"), field: "spec.ingress[0].icmp.code", detail: "requires type"},
		{name: "icmp with tcp", doc: in("{action: Allow, protocol: TCP, icmp: {type: 8}}"), field: "spec.ingress[0].icmp", detail: "requires protocol ICMP or ICMPv6"},
		{name: "not icmp without protocol", doc: in("{action: Allow, notICMP: {type: 8}}"), field: "spec.ingress[0].notICMP", detail: "requires protocol ICMP or ICMPv6"},
		{name: "icmp number protocol", doc: in("{action: Allow, protocol: 58, icmp: {type: 128}}")},
		{name: "icmp ip version", doc: in("{action: Allow, protocol: ICMP, ipVersion: 6}"), field: "spec.ingress[0].ipVersion", detail: "must be 4 with protocol ICMP"},
		{name: "icmpv6 ip version", doc: in("{action: Allow, protocol: ICMPv6, ipVersion: 4}"), field: "spec.ingress[0].ipVersion", detail: "must be 6 with protocol ICMPv6"},
		{name: "bad port", doc: in("{action: Allow, protocol: TCP, destination: {ports: [80, '80-x']}}"), field: "spec.ingress[0].destination.ports[1]", detail: `"80-x" is not a port or range`},
		{name: "reversed range", doc: in("{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}"), field: "spec.ingress[0].destination.ports[0]", detail: `"90:80" is not a port or range`},
		{name: "port 0", doc: in("{action: Allow, protocol: UDP, source: {notPorts: [0]}}"), field: "spec.ingress[0].source.notPorts[0]", detail: "ports are 1 to 65535"},
		{name: "port too large", doc: in("{action: Allow, protocol: UDP, source: {ports: [65536]}}"), field: "spec.ingress[0].source.ports[0]", detail: `"65536" is not a port or range`},
		{name: "ports without protocol", doc: in("{action: Allow, destination: {ports: [80]}}"), field: "spec.ingress[0].destination.ports", detail: "allowed only with protocol TCP, UDP, SCTP or UDPLite"},
		{name: "ports with icmp", doc: in("{action: Allow, protocol: ICMP, destination: {notPorts: [80]}}"), field: "spec.ingress[0].destination.notPorts", detail: "allowed only with protocol"},
		{name: "ports with udplite", doc: in("{action: Allow, protocol: UDPLite, destination: {ports: [80]}}")},
		{name: "ports with protocol number", doc: in("{action: Allow, protocol: 6, destination: {ports: [80]}}")},
		{name: "nets", doc: in("{action: Allow, ipVersion: 6, source: {nets: ['2001:db8::/32', 'fd00::1']}, destination: {notNets: ['fd00::/8']}}")},
		{name: "bad net", doc: in("{action: Allow, source: {nets: [10.0.0.0/40]}}"), field: "spec.ingress[0].source.nets[0]", detail: "is not a CIDR"},
		{name: "net version mismatch", doc: in("{action: Allow, ipVersion: 4, destination: {nets: ['2001:db8::/32']}}"), field: "spec.ingress[0].destination.nets[0]", detail: "is an IPv6 network but the rule's ipVersion is 4"},
		{name: "nets mixed", doc: in("{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: ['fd00::/8']}}"), field: "spec.ingress[0].destination.notNets[0]", detail: "mixes IP versions"},
		{name: "types lowercase", doc: np("{types: [ingress]}"), field: "spec.types[0]", detail: "use Ingress or Egress"},
		{name: "types twice", doc: np("{types: [Egress, Egress]}"), field: "spec.types[1]", detail: "listed twice"},
		{name: "ingress rules without type", doc: np("{types: [Egress], ingress: [{action: Allow}]}"), field: "spec.types", detail: "does not include Ingress"},
		{name: "egress rules without type", doc: np("{types: [Ingress], egress: [{action: Allow}]}"), field: "spec.types", detail: "does not include Egress"},
		{name: "too many rules", doc: np("{ingress: [" + many + "]}"), field: "spec.ingress", detail: "has 1025 rules; at most 1024"},
		{name: "bad policy selector", doc: np("{selector: 'role =='}"), field: "spec.selector", detail: "is not a valid selector"},
		{name: "bad rule selector", doc: in("{action: Allow, source: {notSelector: 'a in {'}}"), field: "spec.ingress[0].source.notSelector", detail: "is not a valid selector"},
		{name: "global in policy selector", doc: np("{selector: global()}"), field: "spec.selector", detail: "global() may only be used in a rule's namespaceSelector"},
		{name: "global in namespace selector", doc: in("{action: Allow, source: {namespaceSelector: global(), selector: \"role == 'x'\"}}")},
		{name: "global combined", doc: in("{action: Allow, source: {namespaceSelector: \"global() && a == 'b'\"}}"), field: "spec.ingress[0].source.namespaceSelector", detail: "cannot be combined"},
		{name: "service account selector", doc: np("{serviceAccountSelector: \"projectcalico.org/name == 'api'\", ingress: [{action: Allow, source: {serviceAccounts: {names: [api], selector: all()}}}]}")},
		{name: "services refused", doc: np("{egress: [{action: Allow, destination: {services: {name: kubernetes, namespace: default}}}]}"), field: "spec.egress[0].destination.services", detail: "is not supported"},
		{name: "source services refused", doc: in("{action: Allow, source: {services: {name: x, namespace: default}}}"), field: "spec.ingress[0].source.services", detail: "is not supported"},
		{name: "http refused", doc: in("{action: Allow, http: {methods: [GET, PUT], paths: [{exact: /api}, {prefix: /static/}]}}"), field: "spec.ingress[0].http", detail: "is not supported: Tabby has no application-layer (HTTP) proxy"},
		{name: "profile http refused", doc: manifest("Profile", "{name: net-1}", "{ingress: [{action: Allow}, {action: Allow, http: {methods: [GET]}}]}"), field: "spec.ingress[1].http", detail: "is not supported"},
		{name: "rule annotations", doc: in("{action: Allow, metadata: {annotations: {'bad key': x}}}"), field: "spec.ingress[0].metadata.annotations", detail: `key "bad key"`},
		{name: "tier", doc: np("{tier: Security}"), field: "spec.tier", detail: "is not a tier name"},
		{name: "tiered policy", doc: manifest("NetworkPolicy", "{name: security.pol, namespace: prod}", "{tier: security}")},
		{name: "tiered global policy", doc: manifest("GlobalNetworkPolicy", "{name: security.pol}", "{tier: security}")},
		{name: "default tier prefix", doc: manifest("GlobalNetworkPolicy", "{name: default.pol}", "{tier: default}")},
		{name: "tiered policy without prefix", doc: manifest("GlobalNetworkPolicy", "{name: pol}", "{tier: security}"), field: "metadata.name", detail: `"pol": a policy in tier "security" must be named "security.<name>"`},
		{name: "tiered policy with another prefix", doc: manifest("NetworkPolicy", "{name: other.pol, namespace: prod}", "{tier: security}"), field: "metadata.name", detail: "must be named"},
		{name: "tier good", doc: manifest("Tier", "{name: security}", "{order: 100, defaultAction: Pass}")},
		{name: "tier defaults", doc: manifest("Tier", "{name: security}", "{}")},
		{name: "tier default action", doc: manifest("Tier", "{name: security}", "{defaultAction: Allow}"), field: "spec.defaultAction", detail: `"Allow" is not allowed`},
		{name: "tier name", doc: manifest("Tier", "{name: a.b}", "{}"), field: "metadata.name", detail: "is not a tier name"},
		{name: "default tier", doc: manifest("Tier", "{name: default}", "{}")},
		{name: "default tier spelled out", doc: manifest("Tier", "{name: default}", "{order: 1000000, defaultAction: Deny}")},
		{name: "default tier order", doc: manifest("Tier", "{name: default}", "{order: 5}"), field: "spec.order", detail: "the default tier's order is 1000000"},
		{name: "default tier action", doc: manifest("Tier", "{name: default}", "{defaultAction: Pass}"), field: "spec.defaultAction", detail: "the default tier's default action is Deny"},
		{name: "kube-admin tier", doc: manifest("Tier", "{name: kube-admin}", "{order: 1000, defaultAction: Pass}")},
		{name: "kube-baseline tier action", doc: manifest("Tier", "{name: kube-baseline}", "{defaultAction: Deny}"), field: "spec.defaultAction", detail: "default action is Pass"},
		{name: "gnp good", doc: gnp("{namespaceSelector: \"team == 'a'\", doNotTrack: false, preDNAT: false, applyOnForward: false, ingress: [{action: Allow}]}")},
		{name: "gnp doNotTrack refused", doc: gnp("{doNotTrack: true, applyOnForward: false, ingress: [{action: Allow}]}"), field: "spec.doNotTrack", detail: "true is not supported"},
		{name: "gnp preDNAT refused", doc: gnp("{preDNAT: true, ingress: [{action: Allow}]}"), field: "spec.preDNAT", detail: "true is not supported"},
		{name: "gnp applyOnForward refused", doc: gnp("{applyOnForward: true, ingress: [{action: Allow}]}"), field: "spec.applyOnForward", detail: "true is not supported"},
		{name: "gnp bad namespace selector", doc: gnp("{namespaceSelector: 'a ='}"), field: "spec.namespaceSelector", detail: "is not a valid selector"},
		{name: "profile", doc: manifest("Profile", "{name: net-1}", "{ingress: [{action: Allow, source: {selector: has(net-1)}}], egress: [{action: Allow}], labelsToApply: {net-1: ''}}")},
		{name: "profile rules checked", doc: manifest("Profile", "{name: net-1}", "{egress: [{action: Accept}]}"), field: "spec.egress[0].action", detail: `"Accept" is not allowed`},
		{name: "profile labels", doc: manifest("Profile", "{name: net-1}", "{labelsToApply: {'a b': x}}"), field: "spec.labelsToApply", detail: `key "a b"`},
	})
}

func TestValidateNil(t *testing.T) {
	if err := Validate(nil); err == nil {
		t.Errorf("Validate(nil) = nil; want an error")
	}
}

func TestValidateCollectsEveryProblem(t *testing.T) {
	p := &IPPool{ObjectMeta: ObjectMeta{Name: "Bad_Name"}, Spec: IPPoolSpec{CIDR: "10.0.0.1/16", IPIPMode: "always", AllowedUses: []string{"X"}}}
	err := Validate(p)
	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("Validate() = %v; want FieldErrors", err)
	}
	var got []string
	for _, fe := range fes {
		got = append(got, fe.Field)
	}
	want := []string{"metadata.name", "spec.cidr", "spec.ipipMode", "spec.allowedUses[0]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("problem fields = %v; want %v (error %v)", got, want, err)
	}
}

func TestFieldErrorsMessageIsBounded(t *testing.T) {
	var l FieldErrors
	for i := 0; i < 15; i++ {
		l = append(l, FieldError{Field: fmt.Sprintf("f%d", i), Detail: "bad"})
	}
	msg := l.Error()
	if !strings.HasSuffix(msg, "; and 5 more problems") || strings.Contains(msg, "f10") {
		t.Errorf("Error() = %q; want 10 problems and \"; and 5 more problems\"", msg)
	}
}
