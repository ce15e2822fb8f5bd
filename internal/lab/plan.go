package lab

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Node types, as `dcos node` prints them.
const (
	TypeMaster = "master (leader)"
	TypeAgent  = "agent"
	TypeRouter = "router"
)

// Fixed names inside a lab.
const (
	MasterNode = "master"
	RouterNode = "router"
	// UplinkSuffix names a node's fabric interface inside its namespace:
	// NAME-eth0.
	UplinkSuffix = "-eth0"
	// ContainerIfName is the container's interface (Mesos: eth0 for the
	// first network).
	ContainerIfName = "eth0"
	// Ports on the master.
	EtcdPort  = 2379
	MesosPort = 5050
	AgentPort = 5051 // in the agents' Mesos PIDs
	// AgentHTTPPort is where each agent serves /livez, /readyz, /metrics
	// on its fabric address.
	AgentHTTPPort = 9099
	// MarathonPort is in the Marathon framework's PID.
	MarathonPort = 15101
)

// NamespacePrefix starts every namespace of lab name.
func NamespacePrefix(name string) string { return "tlab-" + name + "-" }

// NodeNamespace is the namespace of a lab node (fabric, master, router, h1…).
func NodeNamespace(lab, node string) string { return NamespacePrefix(lab) + node }

// ContainerNamespace is the namespace of a lab container.
func ContainerNamespace(lab, container string) string {
	return NamespacePrefix(lab) + "c-" + container
}

// HostName is the name of host i (1-based).
func HostName(i int) string { return "h" + strconv.Itoa(i) }

// Plan is the topology of a lab, computed from its config alone.
type Plan struct {
	Name  string `json:"name"`
	Index int    `json:"index"` // third octet of the fabric subnets
	// Fabric is the namespace holding one bridge per rack.
	Fabric string `json:"fabric"`
	Racks  []Rack `json:"racks"`
	Master Node   `json:"master"`
	// Router joins the racks (nil with one rack: the bridge is the gateway).
	Router *Router `json:"router,omitempty"`
	Hosts  []Node  `json:"hosts"`
	// Mesos identities (a UUID-like master ID, agents MASTERID-S<n>).
	MasterID    string `json:"masterID"`
	FrameworkID string `json:"frameworkID"`
}

// Rack is one subnet: a bridge in the fabric namespace.
type Rack struct {
	Index   int          `json:"index"` // 1-based
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// Subnet6 and Gateway6 are the rack's IPv6 subnet (ipv6 and dual labs).
	Subnet6  netip.Prefix `json:"subnet6,omitzero"`
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
	Bridge   string       `json:"bridge"`
}

// Node is the master or an agent host.
type Node struct {
	Name      string       `json:"hostname"`
	Type      string       `json:"type"`
	ID        string       `json:"id"`
	Namespace string       `json:"namespace"`
	Rack      int          `json:"rack"`
	IP        netip.Prefix `json:"ip"` // fabric address with the rack's length
	Gateway   netip.Addr   `json:"gateway"`
	// IP6 and Gateway6: the IPv6 fabric address (/64) and gateway in ipv6
	// and dual labs.
	IP6      netip.Prefix `json:"ip6,omitzero"`
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
	// FabricLink is the veth end on the rack bridge; Uplink is the other
	// end, inside the node's namespace.
	FabricLink string `json:"fabricLink"`
	Uplink     string `json:"uplink"`
}

// Router is the namespace routing between racks: one leg per rack.
type Router struct {
	Namespace string      `json:"namespace"`
	Legs      []RouterLeg `json:"legs"`
}

// RouterLeg is one router interface, on rack Rack's bridge.
type RouterLeg struct {
	Rack       int          `json:"rack"`
	IP         netip.Prefix `json:"ip"`
	IP6        netip.Prefix `json:"ip6,omitzero"`
	FabricLink string       `json:"fabricLink"`
	Link       string       `json:"link"`
}

// RackSubnet is rack r's subnet in the lab with fabric index idx:
// 10.(100+r).idx.0/24.
func RackSubnet(r, idx int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + r), byte(idx), 0}), 24)
}

// fabric6 holds the IPv6 rack subnets of every lab (unique local).
var fabric6 = netip.MustParsePrefix("fd00:10::/32")

// RackSubnet6 is rack r's IPv6 subnet in the lab with fabric index idx:
// fd00:10:(100+r):idx::/64, written with the digits of the IPv4 subnet
// (10.101.1.0/24 is fd00:10:101:1::/64; host .11 is ::11).
func RackSubnet6(r, idx int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("fd00:10:%d:%d::/64", 100+r, idx))
}

// hostAddr6 is the address of p whose last group reads like the IPv4
// host number last (11 is ::11).
func hostAddr6(p netip.Prefix, last int) netip.Prefix {
	if !p.IsValid() {
		return netip.Prefix{}
	}
	v, _ := strconv.ParseUint(strconv.Itoa(last), 16, 16)
	a := p.Addr().As16()
	a[14], a[15] = byte(v>>8), byte(v)
	return netip.PrefixFrom(netip.AddrFrom16(a), p.Bits())
}

func hostAddr(p netip.Prefix, last int) netip.Prefix {
	a := p.Addr().As4()
	a[3] = byte(last)
	return netip.PrefixFrom(netip.AddrFrom4(a), p.Bits())
}

// MakePlan computes the topology of a validated, defaulted config with
// fabric index idx (1–250) and Mesos master ID masterID.
func MakePlan(c Config, idx int, masterID string) (*Plan, error) {
	if idx < 1 || idx > 250 {
		return nil, fmt.Errorf("fabric index %d: must be 1 to 250", idx)
	}
	p := &Plan{
		Name:        c.Name,
		Index:       idx,
		Fabric:      NodeNamespace(c.Name, "fabric"),
		MasterID:    masterID,
		FrameworkID: masterID + "-0000",
	}
	for r := 1; r <= c.Racks; r++ {
		sub := RackSubnet(r, idx)
		rk := Rack{
			Index:   r,
			Subnet:  sub,
			Gateway: hostAddr(sub, 1).Addr(),
			Bridge:  c.Name + "-br" + strconv.Itoa(r),
		}
		if FabricIPv6(c.IPFamily) {
			rk.Subnet6 = RackSubnet6(r, idx)
			rk.Gateway6 = hostAddr6(rk.Subnet6, 1).Addr()
		}
		p.Racks = append(p.Racks, rk)
	}
	if c.Racks > 1 {
		p.Router = &Router{Namespace: NodeNamespace(c.Name, RouterNode)}
		for _, rk := range p.Racks {
			p.Router.Legs = append(p.Router.Legs, RouterLeg{
				Rack:       rk.Index,
				IP:         netip.PrefixFrom(rk.Gateway, rk.Subnet.Bits()),
				IP6:        hostAddr6(rk.Subnet6, 1),
				FabricLink: c.Name + "-rt" + strconv.Itoa(rk.Index),
				Link:       c.Name + "-r" + strconv.Itoa(rk.Index),
			})
		}
	}
	p.Master = Node{
		Name:       MasterNode,
		Type:       TypeMaster,
		ID:         masterID,
		Namespace:  NodeNamespace(c.Name, MasterNode),
		Rack:       1,
		IP:         hostAddr(p.Racks[0].Subnet, 2),
		Gateway:    p.Racks[0].Gateway,
		IP6:        hostAddr6(p.Racks[0].Subnet6, 2),
		Gateway6:   p.Racks[0].Gateway6,
		FabricLink: c.Name + "-m",
		Uplink:     c.Name + UplinkSuffix,
	}
	perRack := make([]int, c.Racks+1)
	for i := 1; i <= c.Nodes; i++ {
		r := (i-1)%c.Racks + 1
		perRack[r]++
		if perRack[r] > MaxHostsPerRack {
			return nil, fmt.Errorf("nodes %d: more than %d hosts in rack %d", c.Nodes, MaxHostsPerRack, r)
		}
		rk := p.Racks[r-1]
		name := HostName(i)
		p.Hosts = append(p.Hosts, Node{
			Name:       name,
			Type:       TypeAgent,
			ID:         masterID + "-S" + strconv.Itoa(i-1),
			Namespace:  NodeNamespace(c.Name, name),
			Rack:       r,
			IP:         hostAddr(rk.Subnet, 10+perRack[r]),
			Gateway:    rk.Gateway,
			IP6:        hostAddr6(rk.Subnet6, 10+perRack[r]),
			Gateway6:   rk.Gateway6,
			FabricLink: c.Name + "-" + name,
			Uplink:     c.Name + UplinkSuffix,
		})
	}
	return p, nil
}

// Namespaces lists the lab's infrastructure namespaces in creation order.
func (p *Plan) Namespaces() []string {
	ns := []string{p.Fabric}
	if p.Router != nil {
		ns = append(ns, p.Router.Namespace)
	}
	ns = append(ns, p.Master.Namespace)
	for _, h := range p.Hosts {
		ns = append(ns, h.Namespace)
	}
	return ns
}

// AgentNodes are the nodes running a tabby agent: the master (as DC/OS
// runs Calico on masters, so they route to containers) and the hosts.
func (p *Plan) AgentNodes() []Node { return append([]Node{p.Master}, p.Hosts...) }

// Node finds a node by name ("master", "h2"), Mesos ID or fabric IP.
func (p *Plan) Node(key string) (Node, bool) {
	for _, n := range append([]Node{p.Master}, p.Hosts...) {
		if n.Name == key || n.ID == key || n.IP.Addr().String() == key || (n.IP6.IsValid() && n.IP6.Addr().String() == key) {
			return n, true
		}
	}
	return Node{}, false
}

// Host finds an agent host by name, Mesos ID or fabric IP.
func (p *Plan) Host(key string) (Node, bool) {
	n, ok := p.Node(key)
	if !ok || n.Type != TypeAgent {
		return Node{}, false
	}
	return n, true
}

// DatastoreURL is the master's etcd on the fabric (for agents and DNS).
func (p *Plan) DatastoreURL() string {
	return "http://" + netip.AddrPortFrom(p.Master.IP.Addr(), EtcdPort).String()
}

// DatastoreURL6 is the master's etcd on its IPv6 fabric address ("" in
// an IPv4 lab).
func (p *Plan) DatastoreURL6() string {
	if !p.Master.IP6.IsValid() {
		return ""
	}
	return "http://" + netip.AddrPortFrom(p.Master.IP6.Addr(), EtcdPort).String()
}

// MesosMasterURL is the lab's Mesos master state server.
func (p *Plan) MesosMasterURL() string {
	return "http://" + netip.AddrPortFrom(p.Master.IP.Addr(), MesosPort).String()
}

func prefixOf(a netip.Addr, bits int) netip.Prefix { return netip.PrefixFrom(a, bits) }
